"""Redis batch store: the backend's pipelined upsert against the previous MULTI/EXEC one.

    uv run python scripts/bench_redis_store.py --memories 10000 [--ef-construction 200]

One Valkey + RediSearch on a loopback port; two tenants (two indexes) filled with the same
``bench_memory.py`` corpus in batches of 1,000, batch by batch in alternating order, one
through :class:`RedisBackend` (one round trip per batch, no transaction, HSET then
PERSIST/PEXPIREAT) and one through the upsert it replaced (MULTI/EXEC chunks of 100, DELETE
before each HSET). Also prints Valkey's own CPU seconds per memory, which is where a
store's time goes (RediSearch inserts each vector into its HNSW graph inline).
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
from memory_service.backends.base import NEVER, Record
from memory_service.backends.redis import EF_CONSTRUCTION, RedisBackend
from memory_service.clock import now_us


class PreviousUpsert(RedisBackend):
    """The upsert before issue 14's change, kept here only as the baseline."""

    async def upsert(self, batch: list[Record]) -> None:
        for tenant in {r.tenant for r in batch}:
            await self._ensure_index(tenant)
        for start in range(0, len(batch), 100):
            pipe = self.r.pipeline(transaction=True)
            for r in batch[start : start + 100]:
                key = self._prefix(r.tenant) + r.id
                pipe.delete(key)
                pipe.hset(key, mapping=self._mapping(r))
                if r.expires_at != NEVER:
                    pipe.pexpireat(key, max(r.expires_at // 1000, 1))
            await pipe.execute()


async def server_cpu(backend: RedisBackend) -> float:
    info = await backend.r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def run(n: int, ef: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        valkey = ValkeyServer(Path(tmp)).start()
        try:
            current = RedisBackend(valkey.url, DIM, ef_construction=ef)
            previous = PreviousUpsert(valkey.url, DIM, ef_construction=ef)
            await current.open()
            await previous.open()
            corpus, t0 = make_corpus(n, seed=0), now_us()
            took = {"pipelined (service)": 0.0, "MULTI/EXEC (previous)": 0.0}
            cpu = dict.fromkeys(took, 0.0)
            pair = list(zip(took, (current, previous), strict=True))
            for start in range(0, n, 1000):
                for name, backend in pair if (start // 1000) % 2 == 0 else pair[::-1]:
                    batch = records(name[:3], corpus, start, min(start + 1000, n), t0)
                    began, cpu_began = time.perf_counter(), await server_cpu(current)
                    await backend.upsert(batch)
                    took[name] += time.perf_counter() - began
                    cpu[name] += await server_cpu(current) - cpu_began
            await current.close()
            await previous.close()
        finally:
            valkey.stop()
    for name in took:
        print(f"{name:>22}: {n / took[name]:,.0f} stores/s, "
              f"Valkey CPU {cpu[name] / n * 1000:.2f} ms a memory")  # fmt: skip
    ratio = took["MULTI/EXEC (previous)"] / took["pipelined (service)"]
    print(f"ratio {ratio:.2f}x (EF_CONSTRUCTION {ef}, {n:,} memories each; target 5,000/s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memories", type=int, default=10_000)
    ap.add_argument("--ef-construction", type=int, default=EF_CONSTRUCTION)
    args = ap.parse_args()
    print(f"load before: {os.getloadavg()[0]:.2f}")
    asyncio.run(run(args.memories, args.ef_construction))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
