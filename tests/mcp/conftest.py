"""The whole stack as `hanzo up` starts it, shared with the end-to-end tests.

No ``__init__.py`` here on purpose: a ``tests/mcp`` package would shadow the ``mcp`` SDK.
"""

from tests.e2e.conftest import running_stack  # noqa: F401  (the fixture, reused)
