"""Gateway benchmark, one command: ``uv run python scripts/bench_gateway.py``.

1. Decision micro-benchmark: ``DecisionCore.decide`` for a hot (cached) API key, with the
   limiter counting, the identity headers and the cached signed assertion; the real
   sidecar answers the first (uncached) call.
2. nginx -> upstream against nginx -> our plugin (auth_request) -> upstream, same nginx,
   same upstream, same hot key, ``wrk`` at a fixed concurrency: added latency p50/p99 and
   the throughput ratio.
3. The floor, in the same window: nginx -> the least possible Python forward-auth
   (``scripts/floor_auth.py``: an HMAC and a dict lookup on the same uvicorn stack) ->
   upstream. ``plugin_to_floor`` is our plugin's throughput over the floor's (target >=
   0.95), at each concurrency of ``--connections`` (default 16 and 64). Rounds interleave
   the three setups so load from other processes hits them alike.

Everything runs on loopback ports chosen at run time and is stopped at the end. Bounded:
well under five minutes. Needs ``wrk`` (Debian package).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway_plugins.core import DecisionCore
from gateway_plugins.limiter.memory import MemoryLimiter
from gateway_plugins.request import AuthRequest
from gateway_plugins.routes import RouteTable
from gateway_plugins.sidecar_client import SidecarClient
from hanzo_contract.assertion import AssertionSigner, ensure_keypair
from hanzo_contract.principal import Limits
from hanzo_stack.gateway_install.layout import DEFAULT_UPSTREAM
from hanzo_stack.process import LOOPBACK, free_port, tcp_open
from hanzo_stack.servers import EchoUpstream, ForwardAuthServer, NginxServer, SidecarServer
from iam_sidecar.keys.models import NewKey
from iam_sidecar.keys.store import KeyStore

PATH = "/v1/memory/retrieve"
#: high enough never to deny, so the limiter still counts every request
BENCH_LIMITS = Limits(requests_per_minute=1_000_000_000)


async def mint(sidecar: SidecarServer) -> str:
    store = await KeyStore.open(sidecar.db_path, sidecar.hash_secret.encode())
    try:
        key, _ = await store.create(
            NewKey(
                organization="bench",
                owner="bench/user",
                name="hot",
                scopes=["memory:read"],
                limits=BENCH_LIMITS,
            )
        )
    finally:
        await store.close()
    return key


async def decision_bench(sidecar: SidecarServer, key: str, work: Path, n: int) -> dict:
    private, _ = ensure_keypair(work / "bench-keys")
    client = SidecarClient(sidecar.url, sidecar.verify_token)
    core = DecisionCore(
        routes=RouteTable.load(None),
        keys=client,
        resolver=client,
        limiter=MemoryLimiter(None),
        signer=AssertionSigner(private.read_bytes()),
        assertion_ttl=60,
        positive_cache_max=3600,
    )
    headers = {"authorization": f"Bearer {key}", "host": "bench", "user-agent": "bench"}
    request = AuthRequest("GET", PATH + "?q=1", headers, "127.0.0.1")
    try:
        first = await core.decide(request)  # miss: goes to the sidecar
        assert first.status == 200, first
        samples = []
        for _ in range(n):
            t0 = time.perf_counter()
            d = await core.decide(request)
            samples.append(time.perf_counter() - t0)
            assert d.status == 200
    finally:
        await core.aclose()
    samples.sort()
    return {
        "iterations": n,
        "mean_ms": statistics.fmean(samples) * 1e3,
        "p50_ms": samples[n // 2] * 1e3,
        "p99_ms": samples[int(n * 0.99)] * 1e3,
    }


_LAT = re.compile(r"^\s+(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(url: str, key: str | None, connections: int, seconds: int, threads: int) -> dict:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if key:
        argv += ["-H", f"Authorization: Bearer {key}"]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    lat = {p: _ms(v, u) for p, v, u in _LAT.findall(out)}
    rps = float(_RPS.search(out).group(1))  # type: ignore[union-attr]
    non2xx = _NON2XX.search(out)
    return {
        "rps": rps,
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (load-independent cost measure)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(runs: list[dict]) -> dict:
    """Per-metric median over rounds; errors summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def measure(
    plugin_base: str,
    floor_base: str,
    direct_port: int,
    key: str,
    auth: ForwardAuthServer,
    connections: int,
    args: argparse.Namespace,
) -> dict:
    """nginx alone, nginx + our plugin, nginx + the floor: interleaved rounds, medians."""
    urls = {
        "direct": (f"http://{LOOPBACK}:{direct_port}{PATH}", None),
        "plugin": (f"{plugin_base}{PATH}", key),
        "floor": (f"{floor_base}{PATH}", key),
    }
    for url, credential in urls.values():  # warm connection pools and caches
        wrk(url, credential, connections, 2, args.threads)
    rounds: dict[str, list[dict]] = {name: [] for name in urls}
    auth_pid = auth.process.pid if auth.process else None
    auth_cpu, plugin_requests = 0.0, 0.0
    for _ in range(args.rounds):
        for name, (url, credential) in urls.items():
            cpu_before = _cpu_seconds(auth_pid) if auth_pid else 0.0
            run = wrk(url, credential, connections, args.seconds, args.threads)
            if name == "plugin":
                auth_cpu += (_cpu_seconds(auth_pid) if auth_pid else 0.0) - cpu_before
                plugin_requests += run["rps"] * args.seconds
            rounds[name].append(run)
    direct, plugin, floor = (_median(rounds[n]) for n in ("direct", "plugin", "floor"))
    return {
        "connections": connections,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "nginx_upstream": direct,
        "nginx_plugin_upstream": plugin,
        "nginx_floor_upstream": floor,
        "added_latency_p50_ms": plugin["p50_ms"] - direct["p50_ms"],
        "added_latency_p99_ms": plugin["p99_ms"] - direct["p99_ms"],
        "throughput_ratio": plugin["rps"] / direct["rps"],
        "floor_ratio": floor["rps"] / direct["rps"],
        "plugin_to_floor": plugin["rps"] / floor["rps"],
        "auth_service_cpu_us_per_request": auth_cpu / plugin_requests * 1e6,
        "errors": direct["errors"] + plugin["errors"] + floor["errors"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="16,64", help="comma-separated")
    parser.add_argument("--seconds", type=int, default=3, help="per round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--decisions", type=int, default=20000)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")

    work = Path(tempfile.mkdtemp(prefix="hanzo-bench-"))
    started: list = []
    try:
        sidecar = SidecarServer(work / "sidecar").start()
        started.append(sidecar)
        key = asyncio.run(mint(sidecar))
        decision = asyncio.run(decision_bench(sidecar, key, work, args.decisions))

        upstream = EchoUpstream(work).start()
        started.append(upstream)
        env = {
            "HANZO_STATE_DIR": str(work / "state"),
            "HANZO_GATEWAY_SIDECAR_URL": sidecar.url,
            "HANZO_GATEWAY_VERIFY_TOKEN": sidecar.verify_token,
            "HANZO_GATEWAY_QUOTA_DB_PATH": str(work / "quotas.sqlite3"),
        }
        auth = ForwardAuthServer(work, env).start()
        started.append(auth)
        direct_port = free_port()
        baseline = (
            f"    server {{\n        listen {LOOPBACK}:{direct_port};\n"
            "        location / {\n            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            f"            proxy_pass http://hanzo_up_{DEFAULT_UPSTREAM};\n        }}\n    }}\n"
        )
        nginx = NginxServer(work / "nginx", auth.addr, upstream.addr, extra_servers=baseline)
        nginx.start()
        started.append(nginx)
        assert tcp_open(direct_port)

        floor_port = free_port()
        floor = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("floor_auth.py")),
             "--port", str(floor_port)],
            env={**os.environ, "HANZO_FLOOR_KEY": key},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not tcp_open(floor_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        floor_nginx = NginxServer(work / "nginx-floor", f"{LOOPBACK}:{floor_port}", upstream.addr)
        try:
            floor_nginx.start()
            started.append(floor_nginx)
            results = [
                measure(nginx.url, floor_nginx.url, direct_port, key, auth, c, args)
                for c in (int(x) for x in args.connections.split(","))
            ]
        finally:
            floor.terminate()
            floor.wait(10)
        result = {
            "decision_cached_key": decision,
            "load_average_1min": os.getloadavg()[0],
            "wrk": results,
        }
        print(json.dumps(result, indent=2))
        for r in results:
            print(f"connections {r['connections']}: plugin/nginx {r['throughput_ratio']:.3f}, "
                  f"floor/nginx {r['floor_ratio']:.3f}, plugin/floor "
                  f"{r['plugin_to_floor']:.3f} (target >= 0.95)")  # fmt: skip
        if any(r["errors"] for r in results):
            sys.exit("non-2xx responses during the benchmark")
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
