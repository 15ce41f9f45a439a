from inference_gateway.cli import cli

cli()
