"""IAM sidecar benchmark, one command: ``uv run python scripts/bench_sidecar.py [--casdoor]``.

1. ``KeyStore.verify`` in-process over SQLite (WAL): random live keys, p50/p99, ops/s.
2. ``POST /v1/keys/verify`` on a real ``python -m iam_sidecar serve`` process over loopback,
   a fixed number of requests at a fixed concurrency (httpx client: the client's own cost
   is included, so this is a floor for the server).
3. With ``--casdoor``: a real Casdoor (temp state), the example tenant applied, then the
   time from "user removed from a role in Casdoor" to "verify no longer grants that scope"
   over several trials, at the given reconcile interval. This is the documented bound.

Everything is bounded (well under five minutes), on loopback ports chosen at run time,
and stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, http_ok
from iam_sidecar.casdoor.client import CasdoorClient
from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore

REPO = Path(__file__).resolve().parents[1]


def _stats(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    n = len(samples)
    return {
        "n": n,
        "mean_ms": statistics.fmean(samples) * 1e3,
        "p50_ms": samples[n // 2] * 1e3,
        "p99_ms": samples[min(n - 1, int(n * 0.99))] * 1e3,
    }


async def mint(db: Path, secret: bytes, count: int) -> list[str]:
    store = await KeyStore.open(db, secret)
    try:
        keys = []
        for i in range(count):
            key, _ = await store.create(
                NewKey(
                    organization="bench",
                    owner=f"bench/user{i % 50}",
                    name=f"k{i}",
                    scopes=["memory:read"],
                )
            )
            keys.append(key)
        return keys
    finally:
        await store.close()


async def store_bench(db: Path, secret: bytes, keys: list[str], n: int) -> dict[str, float]:
    store = await KeyStore.open(db, secret)
    rng = random.Random(7)
    try:
        samples = []
        started = time.perf_counter()
        for _ in range(n):
            key = rng.choice(keys)
            t0 = time.perf_counter()
            await store.verify(key)
            samples.append(time.perf_counter() - t0)
        total = time.perf_counter() - started
    finally:
        await store.close()
    return {**_stats(samples), "ops_per_s": n / total}


async def http_bench(url: str, token: str, keys: list[str], n: int, conc: int) -> dict[str, float]:
    rng = random.Random(11)
    samples: list[float] = []
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as client:
        queue = list(range(n))

        async def worker() -> None:
            while queue:
                queue.pop()
                t0 = time.perf_counter()
                r = await client.post("/v1/keys/verify", json={"key": rng.choice(keys)})
                samples.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(r.text)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conc)))
        total = time.perf_counter() - started
    return {**_stats(samples), "req_per_s": n / total, "concurrency": conc}


async def role_removal_bench(work: Path, interval: float, trials: int) -> dict[str, object]:
    sys.path.insert(0, str(REPO))
    from pydantic import SecretStr

    from hanzo_stack.casdoor.server import CasdoorServer
    from iam_sidecar.http.app import build_app
    from iam_sidecar.settings import SidecarSettings
    from iam_sidecar.tenants.apply import apply_plan
    from iam_sidecar.tenants.loader import load_tenant_file
    from tests.sidecar.helpers import SEED_PASSWORDS, unique_example

    casdoor = CasdoorServer(work / "casdoor").start()
    try:
        path, names = unique_example(work)
        acme = names["acme"]
        async with CasdoorClient(casdoor.url, casdoor.client_id, casdoor.client_secret) as cd:
            await apply_plan(cd, load_tenant_file(path), env=SEED_PASSWORDS)
        settings = SidecarSettings(
            state_dir=work / "state",
            casdoor_url=casdoor.url,
            casdoor_client_id=casdoor.client_id,
            casdoor_client_secret=SecretStr(casdoor.client_secret),
            tenant_file=path,
            reconcile_apply=False,
            reconcile_interval_seconds=interval,
        )
        app = build_app(settings)
        elapsed: list[float] = []
        async with app.router.lifespan_context(app):
            state = app.state.sidecar
            key, _ = await state.issuer.issue(
                NewKey(
                    organization=acme,
                    owner=f"{acme}/alice",
                    name="bench",
                    scopes=["memory:read", "memory:write", "keys:manage"],
                )
            )
            async with CasdoorClient(casdoor.url, casdoor.client_id, casdoor.client_secret) as cd:
                for _ in range(trials):
                    await _set_admin(cd, acme, [f"{acme}/alice"])
                    await _wait(state, key, "memory:write", present=True, limit=interval * 3 + 5)
                    await asyncio.sleep(random.uniform(0, interval))
                    await _set_admin(cd, acme, [])
                    t0 = time.monotonic()
                    await _wait(state, key, "memory:write", present=False, limit=interval * 3 + 5)
                    elapsed.append(time.monotonic() - t0)
        return {
            "reconcile_interval_s": interval,
            "trials": trials,
            "elapsed_s": [round(e, 3) for e in elapsed],
            "max_s": round(max(elapsed), 3),
        }
    finally:
        casdoor.stop()


async def _set_admin(cd, org: str, users: list[str]) -> None:  # type: ignore[no-untyped-def]
    role = await cd.get_role(org, "admin")
    role["users"] = users
    await cd.update_object("role", org, "admin", role)


async def _wait(state, key: str, scope: str, present: bool, limit: float) -> None:  # type: ignore[no-untyped-def]
    from iam_sidecar.keys.principals import key_principal

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        record, grant = await state.keys.verify_with_grant(key)
        principal = key_principal(record, grant, state.policy.limits_for(record.organization))
        if (scope in principal.scopes) == present:
            return
        await asyncio.sleep(0.02)
    raise RuntimeError(f"scope {scope} present={present} not reached in {limit}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--verifies", type=int, default=20000)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--casdoor", action="store_true", help="also measure role removal")
    parser.add_argument("--interval", type=float, default=2.0, help="reconcile interval (s)")
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="hanzo-sidecar-bench-"))
    env = {**os.environ, "HANZO_STATE_DIR": str(work / "state")}
    env["HANZO_SIDECAR_CASDOOR_URL"] = f"http://{LOOPBACK}:{free_port()}"  # down: not needed
    secret_dir = work / "state" / "sidecar"
    secret_dir.mkdir(parents=True)
    (secret_dir / "key_hash_secret").write_text(os.urandom(24).hex())
    secret = (secret_dir / "key_hash_secret").read_text().encode()
    db = secret_dir / "sidecar.db"
    keys = asyncio.run(mint(db, secret, args.keys))
    results: dict[str, object] = {
        "store_verify": asyncio.run(store_bench(db, secret, keys, args.verifies))
    }

    port = free_port()
    server = ManagedProcess(
        "sidecar",
        [
            sys.executable,
            "-m",
            "iam_sidecar",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        log_path=work / "sidecar.log",
        cwd=REPO,
        env=env,
    ).start()
    try:
        url = f"http://{LOOPBACK}:{port}"
        server.wait_ready(lambda: http_ok(f"{url}/healthz"), 30)
        token = (secret_dir / "verify_token").read_text().strip()
        results["http_verify"] = asyncio.run(
            http_bench(url, token, keys, args.requests, args.concurrency)
        )
    finally:
        server.stop()
    if args.casdoor:
        results["role_removal"] = asyncio.run(role_removal_bench(work, args.interval, args.trials))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
