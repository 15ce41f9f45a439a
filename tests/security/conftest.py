"""Fixtures shared with other areas: the stack as `hanzo up` starts it (the end-to-end
tests' fixture) and the memory tests' backends (SQLite, LanceDB, Redis) and signers."""

from tests.e2e.conftest import running_stack  # noqa: F401 - fixtures, re-exported
from tests.memory.conftest import (  # noqa: F401
    authenticator,
    backend,
    keypair,
    make_caller,
    signer,
)
