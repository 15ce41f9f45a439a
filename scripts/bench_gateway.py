"""Gateway benchmark, one command: ``uv run python scripts/bench_gateway.py [--quick]``.

1. Decision micro-benchmark: ``DecisionCore.decide`` for a hot (cached) API key, with the
   limiter counting, the identity headers and the cached signed assertion; the real
   sidecar answers the first (uncached) call.
2. nginx -> upstream against nginx -> our plugin (auth_request) -> upstream, same nginx,
   same upstream, same hot key, ``wrk`` at a fixed concurrency: added latency p50/p99 and
   the throughput ratio. The plugin runs as in production: access line on.
3. The floor, in the same window: nginx -> the least possible Python forward-auth
   (``scripts/floor_auth.py``: an HMAC and a dict lookup, a bare ASGI app served by
   uvicorn with the plugin's server options and uvicorn's own httptools protocol; the
   plugin answers its auth endpoints from its own protocol on top of that one,
   ``gateway_plugins/http_protocol.py``) -> upstream. ``plugin_to_floor`` is our plugin's
   throughput over the floor's (target >= 0.95), at each concurrency of ``--connections``
   (default 16 and 64). Rounds interleave the three setups, in an order rotated each
   round, so load from other processes hits them alike; the figures are medians over
   rounds, with the spread of the per-round ratio, and the CPU time each auth service
   spent per request (from /proc), which the machine's load moves far less.
4. ``wrk`` straight at ``/auth/nginx`` of the plugin, of the plugin served as plain ASGI
   (``HANZO_GATEWAY_ANSWER_IN_PLACE=false``: what the protocol saves) and of the floor,
   with the headers nginx's subrequest carries (a new request id and decision id each):
   no nginx and no upstream share the CPU, so the auth processes' own cost per request
   shows plainest.

Everything runs on loopback ports chosen at run time and is stopped at the end. Bounded:
about 2 min (default: 9 rounds of 2 s per concurrency), ``--quick`` about 1 min. Needs
``wrk`` (Debian package).
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
from hanzo_stack.process import LOOPBACK, ManagedProcess, free_port, tcp_open
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
_COUNT = re.compile(r"(\d+) requests in")
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def wrk(
    url: str,
    key: str | None,
    connections: int,
    seconds: int,
    threads: int,
    script: Path | None = None,
) -> dict:
    argv = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency"]
    if key:
        argv += ["-H", f"Authorization: Bearer {key}"]
    if script is not None:
        argv += ["-s", str(script)]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=seconds + 30
    ).stdout
    lat = {p: _ms(v, u) for p, v, u in _LAT.findall(out)}
    non2xx = _NON2XX.search(out)
    return {
        "rps": float(_RPS.search(out).group(1)),  # type: ignore[union-attr]
        "requests": int(_COUNT.search(out).group(1)),  # type: ignore[union-attr]
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "errors": int(non2xx.group(1)) if non2xx else 0,
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc: what a request costs its auth service,
    far less sensitive to the machine's load than a throughput."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _median(runs: list[dict]) -> dict:
    """Per-metric median over rounds; errors summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms")}
    out["errors"] = sum(r["errors"] for r in runs)
    return out


def _spread(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median": statistics.median(ordered), "min": ordered[0], "max": ordered[-1]}


def measure(setups: dict[str, tuple[str, str | None, int | None]], connections: int,
            args: argparse.Namespace) -> dict:  # fmt: skip
    """nginx alone, nginx + our plugin, nginx + the floor (``setups``: name -> url,
    credential, auth service pid): interleaved rounds, the order rotated each round so
    no setup always runs after the same one; medians, and the spread of the per-round
    plugin/floor ratio (the two runs of a round are seconds apart, so a load swing
    between rounds cancels out of it)."""
    for url, credential, _ in setups.values():  # warm connection pools and caches
        wrk(url, credential, connections, 1, args.threads)
    names = list(setups)
    rounds: dict[str, list[dict]] = {name: [] for name in names}
    cpu = dict.fromkeys(names, 0.0)
    requests = dict.fromkeys(names, 0)
    load = [os.getloadavg()[0]]
    for n in range(args.rounds):
        for name in names[n % 3 :] + names[: n % 3]:
            url, credential, pid = setups[name]
            before = _cpu_seconds(pid) if pid else 0.0
            run = wrk(url, credential, connections, args.seconds, args.threads)
            cpu[name] += (_cpu_seconds(pid) if pid else 0.0) - before
            requests[name] += run["requests"]
            rounds[name].append(run)
    load.append(os.getloadavg()[0])
    direct, plugin, floor = (_median(rounds[n]) for n in ("direct", "plugin", "floor"))
    per_round = [
        p["rps"] / f["rps"] for p, f in zip(rounds["plugin"], rounds["floor"], strict=True)
    ]
    plugin_cpu = cpu["plugin"] / requests["plugin"] * 1e6
    floor_cpu = cpu["floor"] / requests["floor"] * 1e6
    return {
        "connections": connections,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "load_average_1min": load,
        "nginx_upstream": direct,
        "nginx_plugin_upstream": plugin,
        "nginx_floor_upstream": floor,
        "added_latency_p50_ms": plugin["p50_ms"] - direct["p50_ms"],
        "added_latency_p99_ms": plugin["p99_ms"] - direct["p99_ms"],
        "throughput_ratio": plugin["rps"] / direct["rps"],
        "floor_ratio": floor["rps"] / direct["rps"],
        "plugin_to_floor": plugin["rps"] / floor["rps"],
        "plugin_to_floor_per_round": _spread(per_round),
        "auth_cpu_us_per_request": {"plugin": plugin_cpu, "floor": floor_cpu},
        "errors": direct["errors"] + plugin["errors"] + floor["errors"],
    }


#: what nginx's auth subrequest carries (``deploy/nginx/hanzo-auth-locations.conf``), a new
#: decision id and request id per request as nginx makes them
_SUBREQUEST_LUA = """counter = 0
request = function()
  counter = counter + 1
  local id = string.format("%032x", counter)
  return wrk.format("GET", "/auth/nginx", {
    ["X-Original-URI"] = "PATH", ["X-Original-Method"] = "GET",
    ["X-Forwarded-For"] = "127.0.0.1", ["X-Forwarded-Host"] = "bench",
    ["X-Request-Id"] = id, ["X-Hanzo-Decision-Id"] = id,
    ["Authorization"] = "Bearer KEY"})
end
"""


def measure_direct(
    auth: dict[str, tuple[str, int | None]], key: str, work: Path, args: argparse.Namespace
) -> dict:
    """``wrk`` straight at ``/auth/nginx`` of each auth service in ``auth`` (no nginx, no
    upstream: the auth process is the only server), as nginx's subrequest would ask,
    at the first concurrency: throughput and the auth process's CPU time per request,
    in an order rotated each round."""
    script = work / "subrequest.lua"
    script.write_text(_SUBREQUEST_LUA.replace("PATH", PATH).replace("KEY", key))
    connections = int(args.connections.split(",")[0])
    runs: dict[str, list[dict]] = {name: [] for name in auth}
    cpu = dict.fromkeys(auth, 0.0)
    load = [os.getloadavg()[0]]
    for n in range(args.direct_rounds):
        turn = n % len(auth)
        for name in list(auth)[turn:] + list(auth)[:turn]:
            url, pid = auth[name]
            before = _cpu_seconds(pid) if pid else 0.0
            run = wrk(url, None, connections, args.seconds, args.threads, script)
            cpu[name] += (_cpu_seconds(pid) if pid else 0.0) - before
            runs[name].append(run)
    load.append(os.getloadavg()[0])
    out: dict = {"connections": connections, "load_average_1min": load}
    for name, done in runs.items():
        requests = sum(r["requests"] for r in done)
        out[name] = {
            "rps": statistics.median(r["rps"] for r in done),
            "cpu_us_per_request": cpu[name] / requests * 1e6,
            "errors": sum(r["errors"] for r in done),
        }
    out["plugin_to_floor"] = out["plugin"]["rps"] / out["floor"]["rps"]
    out["plugin_asgi_to_floor"] = out["plugin_asgi"]["rps"] / out["floor"]["rps"]
    return out


def _access_lines(log: Path) -> int:
    """The plugin's access lines in its log (the lines are on, as in production)."""
    return sum('"logger": "gateway_plugins.access"' in line for line in log.open())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", default="16,64", help="comma-separated")
    parser.add_argument("--seconds", type=int, default=2, help="per round")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument(
        "--direct-rounds", type=int, default=4, help="rounds of wrk straight at the auth ports"
    )
    parser.add_argument("--quick", action="store_true", help="4 rounds of 1 s (~1 min)")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.decisions, args.direct_rounds = 4, 1, 5000, 2
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
        floor = ManagedProcess(
            "floor",
            [sys.executable, str(Path(__file__).with_name("floor_auth.py")),
             "--host", LOOPBACK, "--port", str(floor_port)],
            log_path=work / "floor.log",
            env={"HANZO_FLOOR_KEY": key},
        )  # fmt: skip
        started.append(floor)
        floor.start().wait_ready(lambda: tcp_open(floor_port), 30)
        floor_nginx = NginxServer(work / "nginx-floor", f"{LOOPBACK}:{floor_port}", upstream.addr)
        floor_nginx.start()
        started.append(floor_nginx)
        setups = {
            "direct": (f"http://{LOOPBACK}:{direct_port}{PATH}", None, None),
            "plugin": (f"{nginx.url}{PATH}", key, auth.process.pid if auth.process else None),
            "floor": (f"{floor_nginx.url}{PATH}", key, floor.pid),
        }
        results = [measure(setups, c, args) for c in (int(x) for x in args.connections.split(","))]
        plugin_pid = auth.process.pid if auth.process else None
        asgi_env = {"HANZO_GATEWAY_QUOTA_DB_PATH": str(work / "quotas-asgi.sqlite3")}
        asgi = ForwardAuthServer(work, {**env, **asgi_env, "HANZO_GATEWAY_ANSWER_IN_PLACE": "0"})
        asgi.start()
        started.append(asgi)
        direct = measure_direct(
            {
                "plugin": (f"{auth.url}/auth/nginx", plugin_pid),
                "plugin_asgi": (f"{asgi.url}/auth/nginx", asgi.process.pid),  # type: ignore[union-attr]
                "floor": (f"http://{LOOPBACK}:{floor_port}/auth/nginx", floor.pid),
            },
            key,
            work,
            args,
        )
        auth.stop()  # SIGTERM: the plugin writes its last batch of access lines
        result = {
            "decision_cached_key": decision,
            "wrk": results,
            "direct_auth": direct,
            "plugin_access_lines": _access_lines(auth.process.log_path),  # type: ignore[union-attr]
        }
        print(json.dumps(result, indent=2))
        for r in results:
            spread, cpu = r["plugin_to_floor_per_round"], r["auth_cpu_us_per_request"]
            print(f"connections {r['connections']}: plugin/floor {r['plugin_to_floor']:.3f} "
                  f"(per round {spread['min']:.2f}-{spread['max']:.2f}, median "
                  f"{spread['median']:.3f}; target >= 0.95), plugin/nginx "
                  f"{r['throughput_ratio']:.3f}, floor/nginx {r['floor_ratio']:.3f}; "
                  f"auth CPU per request plugin {cpu['plugin']:.0f} us, floor "
                  f"{cpu['floor']:.0f} us; load {r['load_average_1min'][0]:.1f}"
                  f"->{r['load_average_1min'][1]:.1f}")  # fmt: skip
        p, a, f = direct["plugin"], direct["plugin_asgi"], direct["floor"]
        print(f"straight at /auth/nginx, {direct['connections']} connections: plugin "
              f"{p['rps']:.0f} req/s, {p['cpu_us_per_request']:.0f} us CPU per request; "
              f"plugin as ASGI {a['rps']:.0f} req/s, {a['cpu_us_per_request']:.0f} us; floor "
              f"{f['rps']:.0f} req/s, {f['cpu_us_per_request']:.0f} us; plugin/floor "
              f"{direct['plugin_to_floor']:.3f} (as ASGI {direct['plugin_asgi_to_floor']:.3f}); "
              f"load {direct['load_average_1min'][0]:.1f}"
              f"->{direct['load_average_1min'][1]:.1f}")  # fmt: skip
        if any(r["errors"] for r in results) or p["errors"] or a["errors"] or f["errors"]:
            sys.exit("non-2xx responses during the benchmark")
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
