"""What the CLI learns from a stack started by ``hanzo up`` on this machine.

``hanzo up`` writes ``<state>/stack.json`` (no secrets: the Casdoor URLs, the shared CLI
application's client id, the gateway URL, the demo organization). The client reads that
file itself rather than importing ``hanzo_stack`` (the layering rule), so ``hanzo login``
needs no flags locally, and saved credentials can follow the stack when ``hanzo up`` gives
it new ports.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from hanzo_contract.settings import default_state_dir


class LocalStack(BaseModel):
    """The part of ``stack.json`` the client needs (the rest is ignored)."""

    model_config = ConfigDict(extra="ignore")

    state_dir: str
    casdoor_url: str
    #: Casdoor behind the stack's nginx front, whose token endpoint passes the sidecar's
    #: token gate (Casdoor's own port has none); absent in a stack.json from before it
    casdoor_front_url: str | None = None
    cli_client_id: str
    gateway_url: str
    demo_organization: str | None = None


def stack_file(state_dir: Path | None = None) -> Path:
    return (state_dir or default_state_dir()) / "stack.json"


def read_local_stack(state_dir: Path | None = None) -> LocalStack | None:
    """The stack last started from ``state_dir`` (default: ``HANZO_STATE_DIR`` or
    ``~/.local/state/hanzo``), or ``None`` when there is none or the file is unreadable."""
    path = stack_file(state_dir)
    try:
        return LocalStack.model_validate_json(path.read_text())
    except (OSError, ValidationError):
        return None


def signin_url(stack: LocalStack) -> str:
    """Where the CLI signs in: the Casdoor front, so every grant (the device grant above
    all) passes the token gate; Casdoor itself only for a stack that has no front."""
    return stack.casdoor_front_url or stack.casdoor_url
