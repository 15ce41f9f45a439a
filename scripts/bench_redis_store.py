"""Redis batch store: the backend as it is against its issue-14 baseline, and where the time goes.

    uv run python scripts/bench_redis_store.py [--memories 10000 | --quick] [--breakdown]

One Valkey + RediSearch on a loopback port; two tenants (two indexes) filled with the same
``bench_memory.py`` corpus in batches of 1,000, batch by batch in alternating order, one
through :class:`RedisBackend` as configured now and one through the baseline (the backend
before issue 14's tuning: HNSW M 16, EF_CONSTRUCTION 200, one pipeline a batch). Prints
store/s, Valkey's own CPU time per memory (``INFO cpu``: where a store's time goes, since
RediSearch inserts each vector into its HNSW graph inline on Valkey's one thread) and this
client's CPU time per memory, then the ratio.

``--breakdown`` also stores the corpus once per index that covers only one part of the
schema (nothing, the TAGs, the NUMERICs, the TEXT field, the vector field alone at the
baseline's and at the current HNSW parameters, FLAT) and prints Valkey CPU per memory for
each, so the cost of every indexed part is measured rather than guessed.
Recall and search latency at these parameters: ``bench_memory.py --backend redis``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import DIM, make_corpus, records

from hanzo_stack.valkey import ValkeyServer
from memory_service.backends.redis import RedisBackend
from memory_service.clock import now_us

BATCH = 1000


def baseline(url: str) -> RedisBackend:
    """The backend before issue 14's tuning: M 16, EF_CONSTRUCTION 200, one pipeline."""
    return RedisBackend(url, DIM, ef_construction=200, m=16, pipelines=1)


class PartOnly(RedisBackend):
    """The backend with an index over one part of the schema (``--breakdown``)."""

    def __init__(self, url: str, part: list[str]) -> None:
        super().__init__(url, DIM)
        self.part = part

    def schema(self) -> list[str]:
        return self.part


async def server_cpu(backend: RedisBackend) -> float:
    info = await backend.r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


async def compare(url: str, n: int) -> None:
    current, base = RedisBackend(url, DIM), baseline(url)
    now = f"current (M {current.m}, EF_C {current.ef_construction}, {current.pipelines} pipelines)"
    names = (now, "baseline (M 16, EF_C 200, 1 pipeline)")
    pair = list(zip(names, (current, base), strict=True))
    took, cpu, client = (dict.fromkeys(names, 0.0) for _ in range(3))
    corpus, t0 = make_corpus(n, seed=0), now_us()
    for _, b in pair:
        await b.open()
    try:
        for start in range(0, n, BATCH):
            for i, (name, backend) in enumerate(pair if (start // BATCH) % 2 == 0 else pair[::-1]):
                batch = records(f"t{i}{name[:4]}", corpus, start, min(start + BATCH, n), t0)
                began, cpu_began = time.perf_counter(), await server_cpu(current)
                client_began = time.process_time()
                await backend.upsert(batch)
                took[name] += time.perf_counter() - began
                client[name] += time.process_time() - client_began
                cpu[name] += await server_cpu(current) - cpu_began
    finally:
        for _, b in pair:
            await b.close()
    for name in names:
        print(f"{name:>46}: {n / took[name]:7,.0f} stores/s, Valkey CPU "
              f"{cpu[name] / n * 1000:.3f} ms a memory, client CPU "
              f"{client[name] / n * 1000:.3f} ms")  # fmt: skip
    ratio = took[names[1]] / took[names[0]]
    cpu_ratio = cpu[names[1]] / cpu[names[0]]
    print(f"ratio {ratio:.2f}x stores/s, {cpu_ratio:.2f}x less Valkey CPU a memory "
          f"({n:,} memories each; target 5,000/s) [{load()}]")  # fmt: skip


async def breakdown(url: str, n: int) -> None:
    tags = ["user", "TAG", "namespace", "TAG", "chash", "TAG",
            "tags", "TAG", "SEPARATOR", ",", "meta", "TAG", "SEPARATOR", ","]  # fmt: skip
    numeric = ["created_at", "NUMERIC", "SORTABLE", "expires_at", "NUMERIC", "size", "NUMERIC"]
    full = RedisBackend(url, DIM).schema()
    vec = full[full.index("vec") :]
    base_vec = baseline(url).schema()[full.index("vec") :]
    flat = ["vec", "VECTOR", "FLAT", "6", "TYPE", "FLOAT32", "DIM", str(DIM),
            "DISTANCE_METRIC", "COSINE"]  # fmt: skip
    parts = {
        "no field indexed (HSET+PERSIST)": ["absent", "TAG"],
        "TAGs (5)": tags,
        "NUMERICs (3)": numeric,
        "TEXT content": ["content", "TEXT"],
        "vector HNSW, baseline params": base_vec,
        "vector HNSW, current params": vec,
        "vector FLAT": flat,
        "whole schema, current": full,
    }
    corpus, t0 = make_corpus(n, seed=0), now_us()
    print(f"Valkey CPU a memory by indexed part, {n:,} memories each [{load()}]")
    for i, (name, part) in enumerate(parts.items()):
        backend = PartOnly(url, part)
        await backend.open()
        try:
            began = await server_cpu(backend)
            for start in range(0, n, BATCH):
                await backend.upsert(records(f"part{i}", corpus, start, min(start + BATCH, n), t0))
            spent = await server_cpu(backend) - began
            print(f"{name:>30}: {spent / n * 1000:.3f} ms")
            await backend.erase(f"part{i}", None)
        finally:
            await backend.close()


async def run(n: int, parts: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        valkey = ValkeyServer(Path(tmp)).start()
        try:
            await compare(valkey.url, n)
            if parts:
                await breakdown(valkey.url, n)
        finally:
            valkey.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--quick", action="store_true", help="2,000 memories each")
    ap.add_argument("--breakdown", action="store_true", help="Valkey CPU by indexed part")
    args = ap.parse_args()
    print(f"before: {load()}")
    asyncio.run(run(2000 if args.quick else args.memories, args.breakdown))
    print(f"after: {load()}")


if __name__ == "__main__":
    main()
