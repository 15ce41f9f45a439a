"""Retrieval quality on real text: recall@10 and MRR@10 per search mode, with baselines.

    uv run python scripts/bench_quality.py             # 600 docstrings
    uv run python scripts/bench_quality.py --pairs 2000

Corpus and queries (``scripts/corpus.py``): docstrings of the standard library and of the
installed third-party packages, none written here. A docstring's summary line (its first
paragraph, at least five words) is the query; the rest of that docstring (up to 120 words)
is the one relevant document. Every other docstring's body is a distractor. This is how a
person who remembers what a function does looks for its documentation.

Through the API: the memory app (SQLite, the local MiniLM model, the routes behind the
signed-assertion authentication) over an in-process ASGI transport. The documents are
embedded once with the local model and stored with their embedding; the service embeds
each query itself. Baselines in the same run, over the same documents and queries:

- **BM25** (Okapi, k1 = 1.2, b = 0.75) over lower-cased alphanumeric words, in Python;
- **exact vector**: cosine over the same document vectors with the same model's query
  vectors, by a full numpy scan.

Target: hybrid beats both baselines on recall@10 and MRR@10.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import titled

from hanzo_contract.assertion import (
    MEMORY_AUDIENCE,
    AssertionSigner,
    AssertionVerifier,
    generate_keypair,
)
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.app import create_app
from memory_service.auth import AssertionAuthenticator
from memory_service.backends.base import keyword_terms
from memory_service.backends.sqlite import SqliteBackend
from memory_service.embeddings.local import LocalMiniLM
from memory_service.settings import MemorySettings

K = 10
STORE, SEARCH = "/v1/memory/store", "/v1/memory/search"


def bm25_rank(docs: list[str], queries: list[str], k1: float = 1.2, b: float = 0.75):
    """Top-``K`` document indexes per query by Okapi BM25."""
    toks = [keyword_terms(d, limit=10_000) for d in docs]
    tfs = [Counter(t) for t in toks]
    lengths = np.array([len(t) for t in toks], dtype=np.float64)
    avg = lengths.mean()
    df: Counter[str] = Counter()
    for tf in tfs:
        df.update(tf.keys())
    n = len(docs)
    postings: dict[str, list[int]] = {}
    for i, tf in enumerate(tfs):
        for term in tf:
            postings.setdefault(term, []).append(i)
    out = []
    for q in queries:
        scores: dict[int, float] = {}
        for term in keyword_terms(q):
            idf = math.log(1 + (n - df[term] + 0.5) / (df[term] + 0.5))
            for i in postings.get(term, ()):
                f = tfs[i][term]
                s = idf * f * (k1 + 1) / (f + k1 * (1 - b + b * lengths[i] / avg))
                scores[i] = scores.get(i, 0.0) + s
        out.append(sorted(scores, key=lambda i: (-scores[i], i))[:K])
    return out


def metrics(ranked: list[list[int]]) -> tuple[float, float]:
    """recall@10 and MRR@10 when query ``i``'s one relevant document is ``i``."""
    recall = mrr = 0.0
    for i, top in enumerate(ranked):
        if i in top[:K]:
            recall += 1
            mrr += 1 / (top.index(i) + 1)
    return recall / len(ranked), mrr / len(ranked)


async def through_api(
    docs: list[str], doc_vecs: np.ndarray, queries: list[str], model: LocalMiniLM, root: Path
) -> dict[str, list[list[int]]]:
    private, public = generate_keypair()
    signer = AssertionSigner(private)
    settings = MemorySettings(backend="sqlite", data_dir=root, embedder="local")
    backend = SqliteBackend(root / "quality.sqlite3", model.dim)
    await backend.open()
    auth = AssertionAuthenticator(AssertionVerifier(public, audience=MEMORY_AUDIENCE))
    app = create_app(settings, backend=backend, embedder=model, authenticator=auth)
    who = Principal(organization="quality", subject="quality/reader",
                    scopes=frozenset({"memory:read", "memory:write"}))  # fmt: skip
    ids: dict[str, int] = {}
    ranked: dict[str, list[list[int]]] = {}

    def bound(path: str) -> dict[str, str]:
        """An assertion for one POST to ``path``, bound to it as the gateway binds it."""
        return {ASSERTION: signer.sign(who, audience=MEMORY_AUDIENCE, method="POST", path=path)}

    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://quality", timeout=600
        ) as client:
            for start in range(0, len(docs), 64):  # vectors in the body: 1 MB limit
                body = {"memories": [
                    {"content": docs[i], "embedding": doc_vecs[i].tolist()}
                    for i in range(start, min(start + 64, len(docs)))
                ]}  # fmt: skip
                r = await client.post(STORE, json=body, headers=bound(STORE))
                r.raise_for_status()
                for offset, res in enumerate(r.json()["results"]):
                    ids[res["id"]] = start + offset
            for mode in ("vector", "keyword", "hybrid"):
                ranked[mode] = []
                for q in queries:
                    r = await client.post(
                        SEARCH,
                        json={"query": q, "mode": mode, "top_k": K},
                        headers=bound(SEARCH),
                    )
                    r.raise_for_status()
                    ranked[mode].append([ids[h["memory"]["id"]] for h in r.json()["results"]])
    finally:
        await backend.close()
    return ranked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=600)
    args = parser.parse_args()
    pairs = titled(args.pairs)
    queries = [t for t, _ in pairs]
    docs = [d for _, d in pairs]
    print(f"load before: {os.getloadavg()[0]:.2f}; {len(pairs)} (summary line -> body) pairs")
    model = LocalMiniLM()
    doc_vecs = model.embed_sync(docs)
    query_vecs = model.embed_sync(queries)
    exact = [list(np.argsort(-(doc_vecs @ q), kind="stable")[:K]) for q in query_vecs]
    rows = {"BM25 baseline": bm25_rank(docs, queries), "exact-vector baseline": exact}
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as tmp:
        api = asyncio.run(through_api(docs, doc_vecs, queries, model, Path(tmp)))
    rows.update({f"API {mode}": ranked for mode, ranked in api.items()})
    print("| ranking | recall@10 | MRR@10 |\n|---|---|---|")
    scores = {name: metrics(ranked) for name, ranked in rows.items()}
    for name, (recall, mrr) in scores.items():
        print(f"| {name} | {recall:.3f} | {mrr:.3f} |")
    hyb = scores["API hybrid"]
    best = [scores["BM25 baseline"], scores["exact-vector baseline"]]
    beats = all(hyb[0] > b[0] and hyb[1] > b[1] for b in best)
    print(f"hybrid beats both baselines: {'yes' if beats else 'NO'}")
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
