"""``hanzo erase --org ORG [--user NAME]``: erasure on request across the parts.

Composes the memory service's erasure (every memory of the user or the organization, from
every backend, index and cache) with the sidecar's (every key revoked, one audit receipt).
The operator holds the state dir, hence the gateway's assertion key: the memory call is
signed as the gateway would sign it, for an operator principal that is an admin of that
organization only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionSigner
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal, PrincipalKind
from memory_service.erasure import ERASE_PATH

#: who an erasure's memory call and audit row name
OPERATOR = "hanzo-operator"


class ErasureFailed(RuntimeError):
    """A part refused or was unreachable; the message says which and what is left to do."""


def erase_memories(memory_url: str, assertion_key: Path, organization: str, user: str | None):
    """Call the memory service's erasure as an operator of ``organization``."""
    principal = Principal(
        organization=organization,
        subject=f"{organization}/{OPERATOR}",
        kind=PrincipalKind.APPLICATION,
        scopes=frozenset({"memory:delete"}),
        is_org_admin=True,
    )
    signer = AssertionSigner(assertion_key.read_bytes())
    try:
        response = httpx.post(
            memory_url.rstrip("/") + ERASE_PATH,
            json={"user": user} if user is not None else {},
            headers={
                ASSERTION: signer.sign(
                    principal, audience=MEMORY_AUDIENCE, method="POST", path=ERASE_PATH
                )
            },
            timeout=300,
        )
    except httpx.HTTPError as exc:
        raise ErasureFailed(f"memory service unreachable at {memory_url}: {exc}") from None
    if response.status_code != 200:
        raise ErasureFailed(f"memory service refused the erasure: {response.text}")
    receipt: dict[str, Any] = response.json()
    return receipt


async def erase(
    store: Any, memory_url: str, assertion_key: Path, organization: str, user: str | None
) -> dict[str, Any]:
    """Memories first (if that fails, no key is revoked and the command can be rerun), then
    keys, then one audit receipt of both. ``store`` is the sidecar's key store."""
    from iam_sidecar.erasure import erase_keys

    memories = erase_memories(memory_url, assertion_key, organization, user)
    receipt = await erase_keys(store, organization, user, memories=memories, actor=OPERATOR)
    return receipt.model_dump()
