"""``python -m iam_sidecar serve --host 127.0.0.1 --port N``."""

from iam_sidecar.cli import cli

if __name__ == "__main__":
    cli()
