"""Limiter on a Valkey cluster, one command: ``uv run python scripts/bench_limiter.py``.

Starts three Valkey primaries in one cluster on loopback ports chosen at run time, then two
OS processes (the plugin's :class:`RedisLimiter`, as two gateway processes run it), each
firing a concurrent burst at the same buckets at the same instant. For every limit it
prints how many requests both processes admitted together against the limit (the overshoot
must stay <= 5%; the Lua script makes it 0), then decisions per second and latency.

Bounded: ``--rounds`` bursts of ``--factor`` x limit requests per limit, a 120 s cap on the
whole run; everything is stopped at the end. The machine's load is printed beside the
figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gateway_plugins.limiter.redis_store import RedisLimiter
from hanzo_contract.principal import Limits
from hanzo_stack.valkey import ValkeyCluster

#: name -> (limits of the key, limit under test, plan of its organization or None)
CASES: dict[str, tuple[Limits, int, Limits | None]] = {
    "requests_per_minute=100": (Limits(requests_per_minute=100), 100, None),
    "units_per_day=250": (Limits(units_per_day=250), 250, None),
    "org plan rpm=150 over 2 keys": (
        Limits(requests_per_minute=1000),
        150,
        Limits(requests_per_minute=150),
    ),
}
DEADLINE_SECONDS = 120.0


async def _worker(url: str, case: str, org: str, count: int, start_at: float, slot: int) -> dict:
    limits, _, plan = CASES[case]
    limiter = RedisLimiter(url, timeout=5.0, cluster=True)
    # both processes share one key, except in the organization-plan case: one key each,
    # one organization budget over both
    buckets = [f"key:{org}/k{slot}", f"org:{org}"] if plan else [f"key:{org}/k0"]
    shared = {f"org:{org}": plan} if plan else None
    latencies: list[float] = []

    async def one() -> bool:
        started = time.perf_counter()
        result = await limiter.hit(buckets, limits, bucket_limits=shared)
        latencies.append(time.perf_counter() - started)
        return result.allowed

    try:
        await limiter.hit([f"key:{org}-warm/w"], Limits(units_per_day=1))  # map the cluster
        await asyncio.sleep(max(start_at - time.time(), 0))
        began = time.perf_counter()
        admitted = sum(await asyncio.gather(*[one() for _ in range(count)]))
        elapsed = time.perf_counter() - began
    finally:
        await limiter.aclose()
    return {"admitted": admitted, "elapsed": elapsed, "latencies": latencies}


def _run_worker(argv: list[str]) -> None:
    url, case, org, count, start_at, slot = argv
    out = asyncio.run(_worker(url, case, org, int(count), float(start_at), int(slot)))
    print(json.dumps(out))


def _burst(url: str, case: str, org: str, factor: int) -> tuple[int, float, list[float]]:
    _, limit, _ = CASES[case]
    per_process = limit * factor // 2
    start_at = time.time() + 2.0  # both processes import and connect before this instant
    argv = [sys.executable, __file__, "--worker", url, case, org]
    procs = [
        subprocess.Popen(
            [*argv, str(per_process), str(start_at), str(slot)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for slot in (0, 1)
    ]
    results = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=DEADLINE_SECONDS)
        if proc.returncode != 0:
            raise SystemExit(f"worker failed with {proc.returncode}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    admitted = sum(r["admitted"] for r in results)
    elapsed = max(r["elapsed"] for r in results)
    latencies = [x for r in results for x in r["latencies"]]
    return admitted, elapsed, latencies


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _run_worker(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="bursts per limit")
    parser.add_argument("--factor", type=int, default=4, help="burst size / limit")
    args = parser.parse_args()
    began = time.monotonic()
    worst = 0.0
    with tempfile.TemporaryDirectory(prefix="bench-limiter-") as tmp:
        cluster = ValkeyCluster(Path(tmp)).start()
        try:
            print(f"valkey cluster: {len(cluster.nodes)} primaries, seed {cluster.url}")
            for case, (_, limit, _) in CASES.items():
                for round_no in range(args.rounds):
                    if time.monotonic() - began > DEADLINE_SECONDS:
                        print("time cap reached, stopping")
                        break
                    org = f"bench{os.getpid()}x{abs(hash(case)) % 10_000}r{round_no}"
                    admitted, elapsed, lat = _burst(cluster.url, case, org, args.factor)
                    overshoot = (admitted - limit) / limit
                    worst = max(worst, overshoot)
                    lat.sort()
                    p99 = lat[int(len(lat) * 0.99) - 1] * 1000
                    print(
                        f"{case:32s} round {round_no}: {admitted}/{limit} admitted of "
                        f"{len(lat)} (2 processes), overshoot {overshoot:+.1%}, "
                        f"{len(lat) / elapsed:,.0f} decisions/s, "
                        f"p50 {statistics.median(lat) * 1000:.1f} ms p99 {p99:.1f} ms"
                    )
        finally:
            cluster.stop()
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    print(f"worst overshoot {worst:+.1%} (bound +5%); load: {load}")
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    raise SystemExit(main())
