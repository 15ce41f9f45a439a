"""The stack as `hanzo up` starts it, shared with the end-to-end tests' fixture."""

from tests.e2e.conftest import running_stack  # noqa: F401 - the fixture, re-exported
