from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from hanzo_stack.casdoor.server import CasdoorServer
from iam_sidecar.tenants.apply import apply_plan
from iam_sidecar.tenants.loader import parse_tenant_text
from tests.support.casdoor_admin import admin_client

TENANT = """
version: 1
organizations:
  - name: {org}
    display_name: UI tenant
    roles:
      - name: member
        scopes: [memory:read]
"""


@pytest.fixture
def sync_tenant() -> Callable[[CasdoorServer, str], str]:
    """Create an organization the way operators do: a tenant file applied by the sidecar."""

    def sync(server: CasdoorServer, org: str) -> str:
        spec = parse_tenant_text(TENANT.format(org=org))

        async def run() -> None:
            async with admin_client(server) as client:
                result = await apply_plan(client, spec)
                assert any(org in label for label in result.applied)

        # Playwright's sync API owns this thread's event loop: apply from another thread
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()
        return org

    return sync
