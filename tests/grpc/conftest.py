"""The whole stack as `hanzo up` starts it (shared with the end-to-end tests), and the memory
tests' backends and assertion signer (for the isolation property over gRPC).

No ``__init__.py`` here on purpose: a ``tests/grpc`` package would shadow ``grpc``.
"""

from tests.e2e.conftest import running_stack  # noqa: F401  (fixtures, reused)
from tests.memory.conftest import (  # noqa: F401
    authenticator,
    backend,
    keypair,
    make_caller,
    signer,
)
