"""API-surface tests reuse the gateway area's real stack (sidecar, forward-auth, echo
upstream, nginx and Caddy) rather than building a second one."""

from tests.gateway.conftest import (  # noqa: F401  (fixtures)
    assertion_keys,
    clock,
    core,
    sidecar,
    sidecar_server,
    stack,
)
