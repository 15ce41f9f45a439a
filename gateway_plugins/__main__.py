from gateway_plugins.cli import cli

cli()
