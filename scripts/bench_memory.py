"""Benchmark the memory backends: store throughput, search latency per mode, vector recall.

    uv run python scripts/bench_memory.py --backend all --sizes 10000,100000

Data is synthetic but shaped like text embeddings: 384-d unit vectors drawn around 2,000
topic centroids, with contents of 8-16 words from a 3,000-word vocabulary. Store goes
through the backend's batch upsert (vectors given, so embedding time is excluded); search
goes through :class:`MemoryService` (the code behind the HTTP routes) with the query vector
given; a keyword query is the two rarest words of a stored memory. "API store/s" is a
further 2,000 memories through ``MemoryService.store`` (what the route runs: dedup lookup,
tenant limits, deterministic embedding) in batches of 100, into a fresh tenant. Recall@10 compares
vector search with an exact numpy scan run in this process. Index builds (LanceDB's
IVF_SQ, the SQLite backend's usearch HNSW) run once after loading, as the service's
maintenance task would, and are timed separately.
``--lance-baseline REV`` runs LanceDB twice per size, first with ``lance.py`` as it was at the
git revision REV, then as it is, and prints each mode's p99 and process CPU ratios (new / old).
``--sqlite-1m`` adds a SQLite run with 1,000,000 memories over 10 tenants of 100,000.
Valkey + RediSearch is started on a loopback port for the Redis backend, PostgreSQL 18 +
pgvector (as an unprivileged user, SCRAM auth) for the postgres backend.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hanzo_contract.principal import Principal
from hanzo_stack.postgres import PostgresServer
from hanzo_stack.valkey import ValkeyServer
from memory_service.backends.base import NEVER, MemoryBackend, Query, Record
from memory_service.backends.lance import LanceBackend
from memory_service.backends.postgres import EF_SEARCH, BulkLoad, PostgresBackend, bulk_load
from memory_service.backends.redis import EF_CONSTRUCTION, RedisBackend
from memory_service.backends.sqlite import SqliteBackend
from memory_service.clock import now_us
from memory_service.embeddings.deterministic import DeterministicEmbedder
from memory_service.models import MemoryIn, SearchRequest
from memory_service.service import MemoryService, content_hash
from memory_service.settings import MemorySettings

DIM = 384
BATCH = 1000


@dataclass
class Corpus:
    vectors: np.ndarray
    contents: list[str]


def make_corpus(n: int, seed: int) -> Corpus:
    # Every tenant draws around the same topics (as real tenants share one embedding
    # model): another tenant's vectors are near a query too, which a shared index must
    # filter out.
    centroids = np.random.default_rng(12345).standard_normal((2000, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    topic = rng.integers(0, len(centroids), n)
    vecs = centroids[topic] + 0.9 * rng.standard_normal((n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vocab = [f"w{i:04d}" for i in range(3000)]
    lengths = rng.integers(8, 17, n)
    words = rng.zipf(1.3, size=int(lengths.sum())) % len(vocab)
    contents, pos = [], 0
    for i, length in enumerate(lengths):
        contents.append(f"memory {i} " + " ".join(vocab[w] for w in words[pos : pos + length]))
        pos += length
    return Corpus(vecs, contents)


def records(tenant: str, corpus: Corpus, start: int, stop: int, t0: int) -> list[Record]:
    return list(iter_records(tenant, corpus, start, stop, t0))


def iter_records(tenant: str, corpus: Corpus, start: int, stop: int, t0: int) -> Iterator[Record]:
    return (
        Record(
            tenant=tenant,
            id=f"m{i}",
            user="bench",
            namespace="default",
            content=corpus.contents[i],
            content_hash=content_hash(corpus.contents[i]),
            metadata={"i": i % 10},
            tags=["t" + str(i % 5)],
            importance=0.5,
            created_at=t0 + i,
            updated_at=t0 + i,
            expires_at=NEVER,
            vector=corpus.vectors[i],
        )
        for i in range(start, stop)
    )


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


async def load(backend: MemoryBackend, tenant: str, corpus: Corpus) -> float:
    t0 = now_us()
    n = len(corpus.contents)
    start = time.perf_counter()
    for s in range(0, n, BATCH):
        await backend.upsert(records(tenant, corpus, s, min(s + BATCH, n), t0))
    return n / (time.perf_counter() - start)


async def bulk_load_postgres(owner_dsn: str, tenant: str, corpus: Corpus) -> BulkLoad:
    """The operator's bulk path: binary COPY into the tenant's own partition, then one
    index build (HNSW with parallel workers), then ATTACH (``postgres.bulk_load``)."""
    n = len(corpus.contents)
    return await bulk_load(owner_dsn, tenant, iter_records(tenant, corpus, 0, n, now_us()))


def query_vectors(corpus: Corpus, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Which memories the queries aim at, and the query vectors (near those memories)."""
    rng = np.random.default_rng(seed + 1)
    picks = rng.integers(0, len(corpus.contents), queries)
    qvecs = corpus.vectors[picks] + 0.05 * rng.standard_normal((queries, DIM)).astype(np.float32)
    qvecs /= np.linalg.norm(qvecs, axis=1, keepdims=True)
    return picks, qvecs


async def explain_ann(backend: PostgresBackend, tenant: str, qvecs: np.ndarray) -> dict[str, float]:
    """Server-side figures of the HNSW statement the backend runs (EXPLAIN ANALYZE, BUFFERS),
    less sensitive to a loaded machine than the client's wall clock."""
    exec_ms, plan_ms, buffers = [], [], []
    q = Query(tenant=tenant, user="bench", now=now_us())
    for vec in qvecs:
        query, params, settings = backend.ann_query(q, vec, 10)
        (row,) = await backend._fetch(
            tenant, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query, params, **settings
        )
        plan = (json.loads(row[0]) if isinstance(row[0], str) else row[0])[0]
        exec_ms.append(plan["Execution Time"])
        plan_ms.append(plan["Planning Time"])
        buffers.append(plan["Plan"]["Shared Hit Blocks"] + plan["Plan"]["Shared Read Blocks"])
    return {"server_exec_p50_ms": round(statistics.median(exec_ms), 2),
            "server_exec_p99_ms": round(pct(exec_ms, 99), 2),
            "server_plan_p50_ms": round(statistics.median(plan_ms), 2),
            "buffers_mean": round(float(np.mean(buffers)))}  # fmt: skip


async def service_store(backend: MemoryBackend, n: int, batch: int = 100) -> float:
    """Stores/s through MemoryService.store (the route's code: dedup, limits, embedding)."""
    settings = MemorySettings(backend=backend.name, embedder="deterministic", max_batch=batch)
    svc = MemoryService(backend, DeterministicEmbedder(DIM), settings)
    tenant = f"svc-{uuid.uuid4().hex[:12]}"  # a fresh tenant: nothing to dedup against
    who = Principal(organization=tenant, subject=f"{tenant}/bench")
    texts = make_corpus(n, seed=99).contents
    start = time.perf_counter()
    created = 0
    for s in range(0, n, batch):
        results = await svc.store(who, [MemoryIn(content=t) for t in texts[s : s + batch]])
        created += sum(r.status == "created" for r in results)
    elapsed = time.perf_counter() - start
    assert created == n, f"only {created} of {n} stored as new"
    return n / elapsed


async def measure(
    backend: MemoryBackend, tenant: str, corpus: Corpus, queries: int, seed: int,
    modes: tuple[str, ...] = ("vector", "keyword", "hybrid"),
) -> dict[str, object]:  # fmt: skip
    settings = MemorySettings(backend=backend.name, embedder="deterministic", max_top_k=100)
    svc = MemoryService(backend, DeterministicEmbedder(DIM), settings)
    who = Principal(organization=tenant, subject=f"{tenant}/bench")
    picks, qvecs = query_vectors(corpus, queries, seed)
    freq: dict[str, int] = {}
    for text in corpus.contents:
        for w in text.split()[2:]:
            freq[w] = freq.get(w, 0) + 1
    # A query names the two most specific words of the memory it looks for.
    qtext = [" ".join(sorted(corpus.contents[i].split()[2:], key=freq.__getitem__)[:2])
             for i in picks]  # fmt: skip
    out: dict[str, object] = {}
    # The exact top 10 of every query, computed before any is timed: a BLAS call between
    # timed queries left its threads spinning into the next query's time (on 2 cores that
    # doubled LanceDB's vector p50, whose search runs in threads of its own).
    exact = np.argpartition(-(qvecs @ corpus.vectors.T), 10, axis=1)[:, :10]
    recalls = []
    for mode in modes:
        lat, cpu = [], 0.0
        for j in range(queries + 10):
            q = j % queries
            req = SearchRequest(query=qtext[q], mode=mode, top_k=10, embedding=qvecs[q].tolist())
            t, c = time.perf_counter(), time.process_time()
            hits = await svc.search(who, req)
            if j >= 10:
                lat.append((time.perf_counter() - t) * 1000)
                cpu += time.process_time() - c  # every thread's: LanceDB searches in its own
            if mode == "vector" and j >= 10:
                want = {f"m{i}" for i in exact[q]}
                recalls.append(len(want & {h.memory.id for h in hits}) / 10)
        out[mode] = {"p50_ms": round(statistics.median(lat), 2), "p99_ms": round(pct(lat, 99), 2),
                     "cpu_ms": round(cpu * 1000 / queries, 2)}  # fmt: skip
    out["recall_at_10"] = round(float(np.mean(recalls)), 4)
    return out


def lance_at(rev: str, root: Path) -> type[MemoryBackend]:
    """``LanceBackend`` as ``lance.py`` was at git revision ``rev``: the baseline of a run."""
    source = subprocess.run(["git", "show", f"{rev}:memory_service/backends/lance.py"],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    path = root / "lance_baseline.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("lance_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.LanceBackend


async def run_one(kind: str, n: int, root: Path, valkey: ValkeyServer | None, queries: int,
                  tenants: int = 1, postgres: PostgresServer | None = None,
                  ef_construction: int = EF_CONSTRUCTION,
                  ef_search: list[int] | None = None,
                  lance: type[MemoryBackend] = LanceBackend,
                  label: str = "") -> dict[str, object]:  # fmt: skip
    owner_dsn = ""
    if kind == "postgres":
        assert postgres is not None
        db = postgres.create_database(f"bench_{n}_{tenants}")
        owner_dsn = db.owner_dsn
        efs = ef_search or [EF_SEARCH]
        backend: MemoryBackend = PostgresBackend(
            db.app_dsn, DIM, migrate_dsn=db.owner_dsn, ef_search=efs[0]
        )
    elif kind == "sqlite":
        backend = SqliteBackend(root / f"sqlite-{n}-{tenants}.db", DIM)
    elif kind == "lancedb":
        backend = lance(root / f"lance-{n}{'-baseline' if label else ''}", DIM)  # type: ignore[call-arg]
    else:
        assert valkey is not None
        backend = RedisBackend(valkey.url, DIM, ef_construction=ef_construction)
    await backend.open()
    try:
        per = n // tenants
        rates = []
        corpus = None
        maintain_s = 0.0
        for t in range(tenants):
            corpus = make_corpus(per, seed=t)
            tenant = f"bench-{n}-{tenants}-{t}"
            if kind == "postgres":
                t0 = time.perf_counter()
                done = await bulk_load_postgres(owner_dsn, tenant, corpus)
                rates.append(per / (time.perf_counter() - t0))
                maintain_s += done.index_s
                print(f"  postgres n={n} tenant {t + 1}/{tenants}: COPY {done.copy_s:.1f} s, "
                      f"indexes {done.index_s:.1f} s, attach {done.attach_s:.1f} s; "
                      f"load avg {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
            else:
                rates.append(await load(backend, tenant, corpus))
                print(f"  {kind} n={n} tenant {t + 1}/{tenants}: {rates[-1]:.0f} stores/s",
                      flush=True)  # fmt: skip
        assert corpus is not None
        last = f"bench-{n}-{tenants}-{tenants - 1}"
        warm = Query(tenant=last, user="bench", now=now_us())
        await backend.vector_search(warm, corpus.vectors[0], 1)  # loads SQLite's tenant cache
        t = time.perf_counter()
        await backend.maintain()
        maintain_s += time.perf_counter() - t
        result = await measure(backend, last, corpus, queries, 0)
        if isinstance(backend, PostgresBackend):
            result.update(await explain_ann(backend, last, query_vectors(corpus, queries, 0)[1]))
            sweep = {}
            for ef in efs[1:]:
                backend.ef_search = ef
                one = await measure(backend, last, corpus, queries, 0, modes=("vector",))
                one.update(await explain_ann(backend, last, query_vectors(corpus, queries, 0)[1]))
                sweep[ef] = one
                print(f"  postgres ef_search {ef}: {one}", flush=True)
            backend.ef_search = efs[0]
            result["ef_search"] = efs[0]
            result["ef_sweep"] = sweep
        api_rate = await service_store(backend, 2000)
        return {"backend": kind + label, "memories": n, "tenants": tenants, "per_tenant": per,
                "store_per_s": round(statistics.mean(rates)), "api_store_per_s": round(api_rate),
                "index_build_s": round(maintain_s, 1), **result}  # fmt: skip
    finally:
        await backend.close()


def table(rows: list[dict[str, object]]) -> str:
    head = ("| backend | memories (tenants) | batch store/s | API store/s | index build s | "
            "vector p50/p99 ms | keyword p50/p99 ms | hybrid p50/p99 ms | recall@10 |")  # fmt: skip
    lines = [head, "|" + "---|" * 9]
    for r in rows:

        def pp(mode: str, r: dict[str, object] = r) -> str:
            m = r[mode]
            assert isinstance(m, dict)
            return f"{m['p50_ms']} / {m['p99_ms']}"

        lines.append(
            f"| {r['backend']} | {r['memories']:,} ({r['tenants']}) | {r['store_per_s']:,} | "
            f"{r['api_store_per_s']:,} | "
            f"{r['index_build_s']} | {pp('vector')} | {pp('keyword')} | {pp('hybrid')} | "
            f"{r['recall_at_10']} |"
        )
    return "\n".join(lines)


def postgres_table(rows: list[dict[str, object]]) -> str:
    """Vector search per ``hnsw.ef_search``: client wall clock beside the server's own time."""
    lines = ["| memories (tenants) | ef_search | vector p50 / p99 ms | recall@10 | "
             "server exec p50 / p99 ms | buffers / query |", "|" + "---|" * 6]  # fmt: skip
    for r in rows:
        if "server_exec_p50_ms" not in r:
            continue
        sweep = r.get("ef_sweep")
        assert isinstance(sweep, dict)
        for ef, m in [(r["ef_search"], r), *sweep.items()]:
            v = m["vector"]
            lines.append(
                f"| {r['memories']:,} ({r['tenants']}) | {ef} | {v['p50_ms']} / {v['p99_ms']} | "
                f"{m['recall_at_10']} | {m['server_exec_p50_ms']} / {m['server_exec_p99_ms']} | "
                f"{m['buffers_mean']} |"
            )
    return "\n".join(lines)


async def query_embedding(queries: int) -> None:
    """p50/p99 of the local MiniLM embedding one search query: the part of a vector or
    hybrid search the rows below exclude (they pass the query vector)."""
    from memory_service.embeddings.local import LocalMiniLM

    model = LocalMiniLM()
    texts = [" ".join(c.split()[2:6]) for c in make_corpus(queries, seed=3).contents]
    await model.embed_query(texts[0])  # warm
    lat = []
    for text in texts:
        t = time.perf_counter()
        await model.embed_query(text)
        lat.append((time.perf_counter() - t) * 1000)
    print(f"query embedding (local model, one query): p50 {statistics.median(lat):.2f} ms, "
          f"p99 {pct(lat, 99):.2f} ms")  # fmt: skip


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--backend", default="all", choices=["all", "sqlite", "lancedb", "redis", "postgres"]
    )
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--sqlite-1m", action="store_true", help="also 1M over 10 tenants (SQLite)")
    ap.add_argument("--postgres-1m", action="store_true", help="also 1M over 10 tenants (postgres)")
    ap.add_argument("--redis-ef-construction", type=int, default=EF_CONSTRUCTION,
                    help="Redis HNSW EF_CONSTRUCTION: store rate against recall")  # fmt: skip
    ap.add_argument(
        "--postgres-ef-search",
        default=None,
        help="postgres hnsw.ef_search values, comma-separated: the first serves "
        "the full run, the others are swept (vector search only)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run: --sizes 10000, 50 queries, the 1M runs "
        "become 10 x 10,000",
    )
    ap.add_argument("--lance-baseline", metavar="REV",
                    help="also run LanceDB's backend as it was at this git revision")  # fmt: skip
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    ap.add_argument("--query-embedding", action="store_true",
                    help="also time the local model embedding a query")  # fmt: skip
    args = ap.parse_args()
    if args.query_embedding:
        await query_embedding(args.queries)
    kinds = ["sqlite", "lancedb", "redis", "postgres"] if args.backend == "all" else [args.backend]
    if args.quick:
        args.sizes, args.queries = "10000", min(args.queries, 50)
    sizes = [int(s) for s in args.sizes.split(",")]
    big = 100_000 if args.quick else 1_000_000
    efs = [int(e) for e in args.postgres_ef_search.split(",")] if args.postgres_ef_search else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        root = Path(tmp)
        valkey = ValkeyServer(root / "valkey").start() if "redis" in kinds else None
        want_pg = "postgres" in kinds or args.postgres_1m
        postgres = PostgresServer(root / "postgres").start() if want_pg else None
        try:
            for kind in kinds:
                for n in sizes:
                    ef = args.redis_ef_construction
                    if kind == "lancedb" and args.lance_baseline:
                        old = f" @{args.lance_baseline}"
                        rows.append(await run_one(kind, n, root, valkey, args.queries,
                                                  lance=lance_at(args.lance_baseline, root),
                                                  label=old))  # fmt: skip
                        print(table(rows[-1:]).splitlines()[-1], flush=True)
                    rows.append(await run_one(kind, n, root, valkey, args.queries,
                                              postgres=postgres, ef_construction=ef,
                                              ef_search=efs))  # fmt: skip
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
            if args.sqlite_1m:
                rows.append(await run_one("sqlite", big, root, None, args.queries, 10))
            if args.postgres_1m:
                rows.append(await run_one("postgres", big, root, None, args.queries, 10,
                                          postgres=postgres, ef_search=efs))  # fmt: skip
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        finally:
            if valkey:
                valkey.stop()
            if postgres:
                postgres.stop()
    print()
    print(table(rows))
    for old, new in itertools.pairwise(rows):
        if str(old["backend"]).startswith("lancedb @") and new["backend"] == "lancedb":
            ratios = ", ".join(f"{m} {new[m]['p99_ms'] / old[m]['p99_ms']:.2f}"  # type: ignore[index]
                               for m in ("vector", "keyword", "hybrid"))  # fmt: skip
            cpus = ", ".join(f"{m} {new[m]['cpu_ms'] / old[m]['cpu_ms']:.2f}"  # type: ignore[index]
                             for m in ("vector", "keyword", "hybrid"))  # fmt: skip
            print(f"lancedb {new['memories']:,}: p99 new/old {ratios}; CPU/query new/old {cpus}")
    if any("server_exec_p50_ms" in r for r in rows):
        print()
        print(postgres_table(rows))
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
