"""``python -m memory_service serve ...``: the same commands as ``hanzo memory-service``."""

from memory_service.cli import cli

cli()
