"""Helpers for the sidecar tests: settings in a temp dir, the app running in-process."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from hanzo_stack.process import LOOPBACK, free_port
from iam_sidecar.http.app import create_app
from iam_sidecar.keys.store import KeyStore
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.state import SidecarState
from tests.support.assertions import bind_assertion


@dataclass(frozen=True)
class StoreTarget:
    """A key store's place on one engine: a SQLite file, or a PostgreSQL database (served by
    its application role, migrated by its owner)."""

    engine: str
    target: str | Path
    migrate_dsn: str | None = None

    async def open(self, hash_secret: bytes, **kwargs: Any) -> KeyStore:
        return await KeyStore.open(self.target, hash_secret, migrate_dsn=self.migrate_dsn, **kwargs)

    def env(self) -> dict[str, str]:
        """``HANZO_SIDECAR_*`` variables that put a sidecar process's store here."""
        if self.engine == "sqlite":
            return {"HANZO_SIDECAR_DB_PATH": str(self.target)}
        return {
            "HANZO_SIDECAR_DATABASE_URL": str(self.target),
            "HANZO_SIDECAR_DATABASE_MIGRATE_URL": str(self.migrate_dsn),
        }

    def settings_overrides(self) -> dict[str, object]:
        """``SidecarSettings`` fields that put a sidecar's store here."""
        if self.engine == "sqlite":
            return {"db_path": self.target}
        return {
            "database_url": SecretStr(str(self.target)),
            "database_migrate_url": SecretStr(str(self.migrate_dsn)),
        }


class ManualClock:
    """A key store clock that stands still until a test moves it: no sleeping, no margins."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_settings(state_dir: Path, **overrides: object) -> SidecarSettings:
    """Settings with everything under ``state_dir``; Casdoor defaults to a dead port."""
    values: dict[str, object] = {
        "state_dir": state_dir,
        "casdoor_url": f"http://{LOOPBACK}:{free_port()}",
        "casdoor_client_id": "nobody",
        "casdoor_client_secret": SecretStr("nothing"),
        "casdoor_retries": 1,
        "casdoor_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return SidecarSettings(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def running_app(
    settings: SidecarSettings, **kwargs: Any
) -> AsyncIterator[tuple[Starlette, SidecarState, httpx.AsyncClient]]:
    """The sidecar app with its lifespan (store open, reconcile per ``kwargs``) and a client."""
    app = kwargs.pop("app", None) or create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://sidecar",
            event_hooks={"request": [bind_assertion]},  # request-bound assertions
        ) as client:
            yield app, app.state.sidecar, client


def bearer(settings: SidecarSettings) -> dict[str, str]:
    assert settings.verify_token is not None
    return {"Authorization": f"Bearer {settings.verify_token.get_secret_value()}"}


EXAMPLE_TENANTS = Path(__file__).resolve().parents[2] / "deploy" / "tenants" / "example.yaml"
SEED_PASSWORDS = {
    "ACME_ALICE_PASSWORD": "alice-Pass-9731",
    "ACME_BOB_PASSWORD": "bob-Pass-5512",
    "GLOBEX_CAROL_PASSWORD": "carol-Pass-2210",
}


def unique_example(directory: Path) -> tuple[Path, dict[str, str]]:
    """The example tenant file with unique organization names (the Casdoor is shared).

    Returns the path and the renaming (``{"acme": "acme-1a2b3c4d", ...}``).
    """
    import re
    import uuid

    suffix = uuid.uuid4().hex[:8]
    names = {"acme": f"acme-{suffix}", "globex": f"globex-{suffix}"}
    text = EXAMPLE_TENANTS.read_text()
    for old, new in names.items():
        text = re.sub(rf"\b{old}\b", new, text)
    path = directory / "tenants.yaml"
    path.write_text(text)
    return path, names


def casdoor_settings(state_dir: Path, casdoor: Any, **overrides: object) -> SidecarSettings:
    """Settings pointing at the session's real Casdoor."""
    return make_settings(
        state_dir,
        casdoor_url=casdoor.url,
        casdoor_client_id=casdoor.client_id,
        casdoor_client_secret=SecretStr(casdoor.client_secret),
        casdoor_retries=2,
        casdoor_timeout_seconds=5.0,
        **overrides,
    )


def signer_for(settings: SidecarSettings) -> Any:
    """Mint gateway assertions with the private key next to the configured public key."""
    from hanzo_contract.assertion import AssertionSigner

    assert settings.assertion_public_key_path is not None
    private = settings.assertion_public_key_path.with_name("assertion.key")
    return AssertionSigner(private.read_bytes())


#: the engines the sidecar's Casdoor tests run Casdoor on
CASDOOR_ENGINES = ("sqlite", "postgres")


@pytest.fixture(name="casdoor", params=CASDOOR_ENGINES)
def casdoor_on_each_engine(request: pytest.FixtureRequest, casdoor: Any) -> Any:
    """The session's Casdoor on SQLite, then the one on PostgreSQL: a module that imports
    this (as ``casdoor``) runs every test on both."""
    return casdoor if request.param == "sqlite" else request.getfixturevalue("casdoor_postgres")
