"""SQLite keyword search at 100k memories: the walk against the previous plans and the whole query.

    uv run python scripts/bench_keyword.py                 # 100,000 memories, 300 queries
    uv run python scripts/bench_keyword.py --quick         # 20,000 memories, 100 queries

The corpus and queries are ``bench_memory.py``'s (synthetic contents over a Zipf
vocabulary; a query is the two rarest words of a stored memory). Each query runs three
times in the same loop, interleaved, in an order that rotates from query to query: as the
service runs it (past ``RANK_BUDGET`` matching rows, the walk over ``memories_postings``,
then the FTS5 plans if it hands on); as the previous plan did (no walk: the rare words'
rows or the rows with every word, proved by the bounds from ``memories_terms``, session 4);
and as the baseline with the budget lifted (bm25 over every matching row). All answers
must be the same rows in the same order, scores to the bit. Reported: wall and CPU time
(this process, all threads) p50 and p99 per mode, the service's ratio to each, and the
service's slowest queries with their words' document frequencies; on a busy machine CPU
time is the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_memory import DIM, load, make_corpus, pct

from memory_service.backends import sqlite
from memory_service.backends.base import Query
from memory_service.clock import now_us


def queries(contents: list[str], n: int, seed: int = 1) -> list[str]:
    """The two rarest words of ``n`` stored memories (as ``bench_memory.measure`` picks)."""
    freq: dict[str, int] = {}
    for text in contents:
        for w in text.split()[2:]:
            freq[w] = freq.get(w, 0) + 1
    picks = np.random.default_rng(seed).integers(0, len(contents), n)
    return [" ".join(sorted(contents[i].split()[2:], key=freq.__getitem__)[:2]) for i in picks]


async def run(n: int, count: int, k: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-keyword-") as tmp:
        backend = sqlite.SqliteBackend(Path(tmp) / "kw.sqlite3", DIM)
        await backend.open()
        try:
            corpus = make_corpus(n, seed=0)
            print(f"loaded {n:,} memories: {await load(backend, 'kw', corpus):.0f}/s", flush=True)
            started, cpu_started = time.perf_counter(), time.process_time()
            await backend.maintain()  # folds the rows into memories_terms and _postings
            print(f"fold: {time.perf_counter() - started:.1f} s wall, "
                  f"{time.process_time() - cpu_started:.1f} s CPU", flush=True)  # fmt: skip
            q = Query(tenant="kw", user="bench", now=now_us())
            texts = queries(corpus.contents, count)
            budget = sqlite.RANK_BUDGET
            modes = {  # (RANK_BUDGET, WALK)
                "walk (service)": (budget, True),
                "previous plan": (budget, False),
                "whole query (baseline)": (10**12, False),
            }
            wall: dict[str, list[float]] = {m: [] for m in modes}
            cpu: dict[str, list[float]] = {m: [] for m in modes}
            for text in texts[:20]:  # warm the page cache
                await backend.keyword_search(q, text, k)
            names = list(modes)
            for i, text in enumerate(texts):
                answers = {}
                # the order rotates: whichever runs first after the loop's own work is slower
                for mode in names[i % len(names) :] + names[: i % len(names)]:
                    limit, walk = modes[mode]
                    sqlite.RANK_BUDGET, sqlite.WALK = limit, walk
                    started, cpu_started = time.perf_counter(), time.process_time()
                    hits = await backend.keyword_search(q, text, k)
                    wall[mode].append((time.perf_counter() - started) * 1000)
                    cpu[mode].append((time.process_time() - cpu_started) * 1000)
                    answers[mode] = [(r.id, s) for r, s in hits]
                sqlite.RANK_BUDGET, sqlite.WALK = budget, True
                assert len({tuple(a) for a in answers.values()}) == 1, (text, answers)
            print("slowest (service, CPU ms): words and their document frequencies")
            slow = sorted(range(len(texts)), key=cpu["walk (service)"].__getitem__)[-5:]
            for i in slow:
                counts = await backend._counts(texts[i].split())
                print(f"  {cpu['walk (service)'][i]:6.2f}  {texts[i]}  {counts.df}")
        finally:
            await backend.close()
    print(f"{count} queries, top {k}, the same rows in the same order in every mode")
    for mode in modes:
        print(f"{mode:>24}: wall p50 {pct(wall[mode], 50):.2f} p99 {pct(wall[mode], 99):.2f} ms; "
              f"CPU p50 {pct(cpu[mode], 50):.2f} p99 {pct(cpu[mode], 99):.2f} ms")  # fmt: skip
    service = "walk (service)"
    for mode in list(modes)[1:]:
        print(f"service / {mode}: CPU p99 {pct(cpu[service], 99) / pct(cpu[mode], 99):.2f}x, "
              f"wall p99 {pct(wall[service], 99) / pct(wall[mode], 99):.2f}x")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--memories", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--top-k", type=int, default=10)
    ap.add_argument("--quick", action="store_true", help="20,000 memories, 100 queries")
    args = ap.parse_args()
    if args.quick:
        args.memories, args.queries = 20_000, 100
    print(f"load before: {os.getloadavg()[0]:.2f}")
    asyncio.run(run(args.memories, args.queries, args.top_k))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
