"""The whole stack (``running_stack``, one per test module that asks for it), for the
client's tests against a real gateway, sidecar and Casdoor."""

from tests.e2e.conftest import running_stack  # noqa: F401 (re-exported fixture)
