"""``python -m hanzo_stack``: the ``hanzo`` CLI without relying on the console script."""

from hanzo_stack.cli import app

app()
