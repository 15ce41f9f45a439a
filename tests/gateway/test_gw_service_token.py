"""Service-to-service: a tenant's service application calls with an ``hk-`` key it owns,
end to end through nginx. The real sidecar applies the tenant file into the real Casdoor
(the organization and roles, never a Casdoor application for the service: any Casdoor
application's secret is a Casdoor-wide admin credential) and resolves the application's
scopes and plan from the tenant file."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import httpx

from hanzo_contract.principal import PrincipalKind
from hanzo_stack.casdoor.server import CasdoorServer
from hanzo_stack.servers import ForwardAuthServer, NginxServer, SidecarServer
from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore
from tests.support.casdoor_admin import admin_client, sidecar_casdoor_env
from tests.support.clock import wait_for_window_room


async def test_service_application_key_through_nginx(
    casdoor: CasdoorServer, stack, make_gateway_env, tmp_path: Path
) -> None:
    org = f"gws-{uuid.uuid4().hex[:8]}"
    app_name = f"{org}-indexer"
    tenant_file = tmp_path / "tenants.yaml"
    tenant_file.write_text(
        f"""
version: 1
casdoor: {{cert: cert-hanzo}}
plans:
  tiny: {{requests_per_minute: 2}}
organizations:
  - name: {org}
    plan: tiny
    roles:
      - {{name: reader, scopes: [memory:read]}}
    applications:
      - {{name: {app_name}, scopes: [memory:read]}}
"""
    )
    started: list = []
    try:
        sidecar = SidecarServer(
            tmp_path / "sidecar",
            env={
                **sidecar_casdoor_env(casdoor),
                "HANZO_SIDECAR_TENANT_FILE": str(tenant_file),
            },
        ).start()
        started.append(sidecar)
        async with admin_client(casdoor) as client:
            deadline = time.monotonic() + 60
            while await client.get_object("organization", "admin", org) is None:
                assert time.monotonic() < deadline, "sidecar did not apply the tenant file"
                await asyncio.sleep(0.5)
            assert await client.get_object("application", "admin", app_name) is None
        store = await KeyStore.open(sidecar.db_path, sidecar.hash_secret.encode())
        try:
            token, _record = await store.create(
                NewKey(
                    organization=org,
                    owner=f"{org}/{app_name}",
                    owner_kind=PrincipalKind.APPLICATION,
                    name="indexer",
                    scopes=["memory:read"],
                )
            )
        finally:
            await store.close()
        # the real clock: the plan's minute must hold every request
        await wait_for_window_room(30)
        async with httpx.AsyncClient(timeout=10) as http:
            env = make_gateway_env(sidecar, tmp_path, HANZO_GATEWAY_CASDOOR_URL=casdoor.url)
            auth = ForwardAuthServer(tmp_path, env).start()
            started.append(auth)
            nginx = NginxServer(tmp_path / "nginx", auth.addr, stack.upstream.addr).start()
            started.append(nginx)

            url = nginx.url + "/v1/memory/retrieve"
            bearer = {"Authorization": f"Bearer {token}"}
            r = await http.get(url, headers=bearer)
            assert r.status_code == 200, r.text
            seen = {k.lower(): v for k, v in r.json()["headers"]}
            assert seen["x-user-id"] == f"{org}/{app_name}"
            assert seen["x-org-id"] == org
            assert seen["x-scopes"] == "memory:read"
            r = await http.post(nginx.url + "/v1/memory/store", headers=bearer, json={})
            assert r.status_code == 403
            # the tenant's plan (2 requests a minute) applies to the application
            assert (await http.get(url, headers=bearer)).status_code == 200
            r = await http.get(url, headers=bearer)
            assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    finally:
        for server in reversed(started):
            server.stop()
