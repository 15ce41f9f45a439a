"""SQLite backend: aiosqlite, WAL, FTS5 for keyword search, vector search per tenant.

Vectors are float32 blobs in the row; :class:`TenantVectors` keeps each searched tenant's
vectors in memory so a vector query touches only that tenant: an exact scan, or once the
tenant is large an HNSW index built by :meth:`maintain` with exact re-scoring.
``synchronous=FULL`` makes a write durable (even across power loss) before the API
acknowledges it.
"""

from __future__ import annotations

# SQL text here is assembled only from constants and "?" placeholders; values are bound.
# ruff: noqa: S608
import asyncio
import fcntl
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import aiosqlite
import anyio
import numpy as np

from memory_service.backends.base import (
    MemoryBackend,
    Query,
    Record,
    Usage,
    by_tenant,
    keyword_terms,
    opened,
)
from memory_service.backends.vector_cache import TenantVectors
from memory_service.bounds import readable_metadata

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    rid INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL, id TEXT NOT NULL, user TEXT NOT NULL, namespace TEXT NOT NULL,
    tenant_tok TEXT NOT NULL,
    content TEXT NOT NULL, content_hash TEXT NOT NULL,
    metadata TEXT NOT NULL, meta_kv TEXT NOT NULL, tags TEXT NOT NULL,
    importance REAL NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, size INTEGER NOT NULL, vector BLOB NOT NULL,
    UNIQUE (tenant, id)
);
CREATE INDEX IF NOT EXISTS memories_order ON memories (tenant, created_at, id);
CREATE INDEX IF NOT EXISTS memories_hash ON memories (tenant, content_hash);
CREATE INDEX IF NOT EXISTS memories_size ON memories (tenant, size);
-- tenant_tok (one token per tenant) partitions the full-text index: a query ANDs it in,
-- so only the caller's tenant's postings are scored.
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    content, tenant_tok, content='memories', content_rowid='rid', tokenize='porter unicode61'
);
CREATE TRIGGER IF NOT EXISTS memories_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, content, tenant_tok)
    VALUES (new.rid, new.content, new.tenant_tok);
END;
CREATE TRIGGER IF NOT EXISTS memories_ad AFTER DELETE ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, tenant_tok)
    VALUES ('delete', old.rid, old.content, old.tenant_tok);
END;
CREATE TRIGGER IF NOT EXISTS memories_au AFTER UPDATE OF content ON memories BEGIN
    INSERT INTO memories_fts (memories_fts, rowid, content, tenant_tok)
    VALUES ('delete', old.rid, old.content, old.tenant_tok);
    INSERT INTO memories_fts (rowid, content, tenant_tok)
    VALUES (new.rid, new.content, new.tenant_tok);
END;
-- (term, tf) -> dl: some row's content holds the FTS5 term tf times among dl tokens, and
-- no row holding it tf times is shorter. bm25 grows with tf and falls with length, so a
-- term's best possible score is read here without its postings (see ``tight_bound``).
-- A written row waits in memories_pending (same transaction) until the next keyword
-- search or maintenance folds it in (``_fold_terms``), so stores do not pay for it; a
-- deleted row's entry stays (still an upper bound) until an erase rebuilds the table.
CREATE TABLE IF NOT EXISTS memories_terms (
    term TEXT NOT NULL, tf INTEGER NOT NULL, dl INTEGER NOT NULL, PRIMARY KEY (term, tf)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS memories_pending (rid INTEGER PRIMARY KEY);
-- (term, tf, dl, rid): row rid holds the FTS5 term tf times in its content and dl tokens in
-- all (bm25()'s length); read per (term, tf) by ascending length, best score first, so a
-- query's top k is found without its words' whole postings (``_Walk``). Filled by the
-- same fold as memories_terms; a deleted or changed row's entries go with it (by rid).
CREATE TABLE IF NOT EXISTS memories_postings (
    term TEXT NOT NULL, tf INTEGER NOT NULL, dl INTEGER NOT NULL, rid INTEGER NOT NULL,
    PRIMARY KEY (term, tf, dl, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS memories_postings_rid ON memories_postings (rid);
CREATE TRIGGER IF NOT EXISTS memories_postings_ad AFTER DELETE ON memories BEGIN
    DELETE FROM memories_postings WHERE rid = old.rid;
END;
CREATE TRIGGER IF NOT EXISTS memories_postings_au AFTER UPDATE OF content ON memories BEGIN
    DELETE FROM memories_postings WHERE rid = old.rid;
END;
-- (no OR IGNORE: an upsert's own conflict clause overrides a trigger's)
CREATE TRIGGER IF NOT EXISTS memories_terms_ai AFTER INSERT ON memories BEGIN
    INSERT INTO memories_pending (rid) SELECT new.rid
    WHERE NOT EXISTS (SELECT 1 FROM memories_pending WHERE rid = new.rid);
END;
CREATE TRIGGER IF NOT EXISTS memories_terms_au AFTER UPDATE OF content ON memories BEGIN
    INSERT INTO memories_pending (rid) SELECT new.rid
    WHERE NOT EXISTS (SELECT 1 FROM memories_pending WHERE rid = new.rid);
END;
"""

#: the index's instance vocabulary, for rebuilding memories_terms from the index alone
_INDEX_VOCAB = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.hanzo_fts_v "
    "USING fts5vocab (main, memories_fts, instance)"
)

#: (term, tf, dl) of an instance vocabulary ``{src}``: see memories_terms
_TERM_ROWS = """
WITH t AS (SELECT term, doc, count(*) AS tf FROM {src} WHERE col = 'content' GROUP BY term, doc),
     d AS (SELECT doc, sum(tf) AS dl FROM t GROUP BY doc)
SELECT term, tf, min(dl) FROM t JOIN d USING (doc) GROUP BY term, tf
"""

#: (term, tf, dl, rid) of an instance vocabulary ``{src}``: see memories_postings
_POSTING_ROWS = """
WITH t AS (SELECT term, doc, count(*) AS tf FROM {src} WHERE col = 'content' GROUP BY term, doc),
     d AS (SELECT doc, count(*) AS dl FROM {src} GROUP BY doc)
SELECT term, tf, dl, doc FROM t JOIN d USING (doc)
"""

#: ``PRAGMA user_version`` of the current schema; 1 added memories_terms, 2 memories_postings
_VERSION = 2

_COLS = (
    "tenant, id, user, namespace, content, content_hash, metadata, meta_kv, tags, "
    "importance, created_at, updated_at, expires_at, size, vector, tenant_tok"
)
_SELECT = f"SELECT {', '.join('m.' + c.strip() for c in _COLS.split(','))} FROM memories m"
_UPSERT = f"""
INSERT INTO memories ({_COLS}) VALUES ({", ".join("?" * 16)})
ON CONFLICT (tenant, id) DO UPDATE SET
    user = excluded.user, namespace = excluded.namespace, content = excluded.content,
    content_hash = excluded.content_hash, metadata = excluded.metadata,
    meta_kv = excluded.meta_kv, tags = excluded.tags, importance = excluded.importance,
    created_at = excluded.created_at, updated_at = excluded.updated_at,
    expires_at = excluded.expires_at, size = excluded.size, vector = excluded.vector
"""


#: keyword search ranks the words' postings across tenants up to this many matching rows;
#: past it, only the tenant's (see ``keyword_search``)
WORDS_ONLY_MAX = 20_000
#: rows bm25() scores for a query before keyword search narrows to its rarer words
RANK_BUDGET = 1_000
#: FTS5's bm25() constants: a word adds at most idf * (K1 + 1) to a row's score
K1 = 1.2
B = 0.75
#: query words whose index terms are remembered (tokenizing is deterministic)
_TERMS_CACHED = 4_096

_V = TypeVar("_V")


class _KeptWords(Generic[_V]):
    """What query words came to (their index terms, their frequencies), kept between
    queries: at most ``_TERMS_CACHED`` words, emptied whole when full, and when the
    ``version`` the values hold for changes. Searches in flight share it, so each takes
    what it needs (:meth:`known`) before it waits, never after."""

    def __init__(self) -> None:
        self.version: str | None = None
        self._values: dict[str, _V] = {}

    def known(self, words: Iterable[str]) -> dict[str, _V]:
        return {w: self._values[w] for w in words if w in self._values}

    def keep(self, new: dict[str, _V], version: str | None = None) -> None:
        if version != self.version:
            self._values, self.version = {}, version
        elif len(self._values) + len(new) > _TERMS_CACHED:
            self._values = {}
        self._values.update(new)


#: what changes whenever the database does: this connection's row changes (every write
#: the service makes goes through it) and SQLite's data version (another connection's)
_CHANGED = "total_changes() || '.' || (SELECT data_version FROM pragma_data_version)"
#: contents tokenized at a time when folding written rows into memories_terms
_FOLD_CHUNK = 2_000
#: rows the walk over memories_postings may score before it hands on to the plans
WALK_BUDGET = 400
#: the walk reads the rows holding every word first when about this many are likely to
#: (their count if the words were independent)
EVERY_MAX = 3_000
#: bytes of the file the walk's connection maps (the OS's page cache, shared)
_WALK_MMAP = 1 << 30
#: find the top k by walking memories_postings first (False: the FTS5 plans alone, as
#: before memories_postings; ``scripts/bench_keyword.py`` measures both)
WALK = True
#: bound words by memories_terms (False: idf x (k1 + 1) and no guess at which plan proves,
#: the plan before memories_terms existed; ``scripts/bench_keyword.py`` measures both)
TIGHT_BOUNDS = True


@dataclass(frozen=True, slots=True)
class _Plan:
    """One way to rank a keyword query: FTS5 MATCH expressions whose rows are the
    candidates (a row in several takes its best score), at most ``size`` of them, and an
    upper bound on the score of any row outside them (None: no row is outside)."""

    matches: tuple[str, ...]
    size: int
    outside: float | None


@dataclass(frozen=True, slots=True)
class IndexStats:
    """What bm25() weighs a row against: rows in the index and their mean length in tokens
    (every column), from FTS5's averages record."""

    rows: int
    avgdl: float


@dataclass(frozen=True, slots=True)
class _Weight:
    """What one query word can add to a row's bm25() score: at most ``bound``, and about
    ``likely`` in the best rows holding it once (to guess which plans will prove)."""

    bound: float
    likely: float


@dataclass(frozen=True, slots=True)
class _Counts:
    """What planning a keyword query reads: each word's document frequency and index
    terms, those terms' entries in memories_terms, the index's statistics."""

    df: dict[str, int]
    stats: IndexStats
    terms: dict[str, tuple[str, ...]]
    seen: dict[str, list[tuple[int, int]]]


def _weights(words: list[str], counts: _Counts) -> dict[str, _Weight]:
    """The most each word can add to a row's bm25() score, and about what it adds in the
    best rows holding it once. A word may be several index terms (a phrase): it occurs no
    more often than any of them, so any one's bound holds; a word without an entry in
    memories_terms gets the loose bound."""
    df, stats = counts.df, counts.stats
    if not TIGHT_BOUNDS:
        return {w: _Weight(loose_bound(df[w], stats), math.inf) for w in words}
    out: dict[str, _Weight] = {}
    for w in words:
        known = [counts.seen[t] for t in counts.terms[w] if t in counts.seen]
        out[w] = _Weight(
            min([tight_bound(df[w], stats, s) for s in known] + [loose_bound(df[w], stats)]),
            max([_likely(df[w], stats, s) for s in known], default=_idf(df[w], stats.rows)),
        )
    return out


def _phrases(words: list[str]) -> str:
    return "content : (" + " OR ".join(f'"{w}"' for w in words) + ")"


def _idf(df: int, rows: int) -> float:
    """FTS5's idf, floored at 1e-6 as FTS5 floors it."""
    idf = math.log((rows - df + 0.5) / (df + 0.5))
    return idf if idf > 0 else 1e-6


def _factor(tf: int, dl: int, avgdl: float) -> float:
    """bm25()'s term-frequency factor for a row of ``dl`` tokens holding a term ``tf``
    times: it grows with tf (towards k1 + 1) and falls with dl."""
    return tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl))


def loose_bound(df: int, stats: IndexStats) -> float:
    """The most a word can add to any row's bm25() score knowing only its document
    frequency: idf x (k1 + 1), which the factor approaches but never reaches."""
    return _idf(df, stats.rows) * (K1 + 1)


def tight_bound(df: int, stats: IndexStats, seen: list[tuple[int, int]]) -> float:
    """The most a word can add to any row's bm25() score, from ``seen`` (tf, fewest
    content tokens of a row holding it tf times; ``memories_terms``): the best factor any
    row can have. A row's length counts every column, so its content alone is a shorter
    length and a higher factor: still a bound."""
    return _idf(df, stats.rows) * max(_factor(tf, dl, stats.avgdl) for tf, dl in seen)


def _likely(df: int, stats: IndexStats, seen: list[tuple[int, int]]) -> float:
    """About what the best rows holding a word once score for it (a guess, never a proof:
    it only orders the plans)."""
    once = [dl for tf, dl in seen if tf == 1]
    return _idf(df, stats.rows) * (_factor(1, min(once), stats.avgdl) if once else 1.0)


def _proved(kth: float, outside: float) -> bool:
    """The k-th score beats every outside row's, with room for floating point (a row at
    the bound itself would tie, and ties may order differently)."""
    return kth > outside + 1e-9 * (1.0 + abs(outside))


def _plans(
    terms: list[str], df: dict[str, int], weights: dict[str, _Weight], tenant_tok: str
) -> list[_Plan]:
    """Ways to rank ``terms`` (rarest first), cheapest first; the last one is complete.

    bm25() costs about a microsecond for each row it scores, and a query of common words
    matches tens of thousands. Rows holding none of the rare words score at most the common
    words' bounds, so ranking the rows that hold a rare word (and scoring their common words
    too) is exact once the k-th of them beats that bound; likewise rows holding every word,
    against the bound of all but the least. A plan that cannot prove it hands on to the
    next; the last ranks every matching row, as bm25() over the whole query would. A
    narrowed plan whose likely k-th score does not beat its bound is not tried: failing
    costs as much as proving.
    """
    total = sum(df[t] for t in terms)
    words = _phrases(terms)
    # past WORDS_ONLY_MAX rows across tenants, rank the tenant's rows only (its token is
    # in a column of weight 0: it changes which rows match, not their scores)
    scope = f'tenant_tok : "{tenant_tok}" AND ' if total > WORDS_ONLY_MAX else ""
    complete = _Plan((scope + words,), total, None)
    if total <= RANK_BUDGET or len(terms) == 1:
        return [complete]
    rare = [terms[0]]
    for t in terms[1:]:
        if sum(df[r] for r in rare) + df[t] > RANK_BUDGET:
            break
        rare.append(t)
    # the budget holds fewer rows than all the words match, so some word is left over
    common = terms[len(rare) :]
    rare_size = sum(df[r] for r in rare)
    bounds = [weights[t].bound for t in terms]
    by_rare = _Plan(
        (_phrases(rare), f"{_phrases(rare)} AND {_phrases(common)}"),
        rare_size,
        sum(weights[t].bound for t in common),
    )
    every = _Plan(
        (" AND ".join(_phrases([t]) for t in terms),),
        df[terms[0]],
        sum(bounds) - min(bounds),
    )
    hopeful = {
        by_rare: max(weights[t].likely for t in rare) > (by_rare.outside or 0.0),
        every: sum(weights[t].likely for t in terms) > (every.outside or 0.0),
    }
    order = [by_rare, every] if rare_size <= RANK_BUDGET else [every, by_rare]
    return [plan for plan in order if hopeful[plan]] + [complete]


def _index_stats(averages: bytes | None) -> IndexStats:
    """Rows in the full-text index and their mean length, as bm25() reads them from FTS5's
    averages record."""
    counts = _varints(averages) if averages else []
    if len(counts) < 2 or not counts[0]:
        return IndexStats(rows=0, avgdl=1.0)  # nothing indexed: nothing will match
    return IndexStats(rows=counts[0], avgdl=max(sum(counts[1:]) / counts[0], 1.0))


def _varints(blob: bytes) -> list[int]:
    """The SQLite varints of ``blob`` (FTS5's averages record: rows, then each column's
    total tokens)."""
    out: list[int] = []
    pos = 0
    while pos < len(blob):
        value = 0
        for i in range(9):
            byte = blob[pos]
            pos += 1
            if i == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if byte < 0x80 or pos == len(blob):
                break
        out.append(value)
    return out


def tenant_token(tenant: str) -> str:
    return "t" + tenant.encode().hex()


def _row(r: Record) -> tuple[Any, ...]:
    return (
        r.tenant, r.id, r.user, r.namespace, r.content, r.content_hash,
        json.dumps(r.metadata), json.dumps(r.meta_kv), json.dumps(r.tags),
        r.importance, r.created_at, r.updated_at, r.expires_at, r.size,
        np.asarray(r.vector, dtype=np.float32).tobytes(), tenant_token(r.tenant),
    )  # fmt: skip


def _record(row: Any) -> Record:
    return Record(
        tenant=row[0], id=row[1], user=row[2], namespace=row[3], content=row[4],
        content_hash=row[5], metadata=readable_metadata(row[6]), tags=json.loads(row[8]),
        importance=row[9], created_at=row[10], updated_at=row[11], expires_at=row[12],
        vector=np.frombuffer(row[14], dtype=np.float32).copy(),
    )  # fmt: skip


def _where(q: Query) -> tuple[str, list[Any]]:
    users = q.users
    conds = ["m.tenant = ?", f"m.user IN ({', '.join('?' * len(users))})", "m.expires_at > ?"]
    params: list[Any] = [q.tenant, *users, q.now]
    if q.namespace is not None:
        conds.append("m.namespace = ?")
        params.append(q.namespace)
    if q.created_after is not None:
        conds.append("m.created_at > ?")
        params.append(q.created_after)
    if q.created_before is not None:
        conds.append("m.created_at < ?")
        params.append(q.created_before)
    for tag in q.tags:
        conds.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE value = ?)")
        params.append(tag)
    for kv in q.meta_kv:
        conds.append("EXISTS (SELECT 1 FROM json_each(m.meta_kv) WHERE value = ?)")
        params.append(kv)
    return " AND ".join(conds), params


class _Tokenizer:
    """FTS5's own tokenizer, configured as the index's, on a private in-memory database:
    the terms of new contents and of query words exactly as the index stores them
    (stemmed, folded), without writing on the serving connection (whose transactions
    belong to the writes). Calls block: run them in a worker thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(
            "CREATE VIRTUAL TABLE tok USING fts5 "
            "(content, tenant_tok, content='', tokenize='porter unicode61');"
            "CREATE VIRTUAL TABLE tok_v USING fts5vocab (tok, instance);"
        )

    def _run(self, texts: list[str], sql: str) -> list[Any]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO tok (rowid, content) VALUES (?, ?)", enumerate(texts)
                )
                return self._db.execute(sql).fetchall()
            finally:
                self._db.execute("ROLLBACK")

    def terms(self, texts: list[str]) -> list[tuple[str, ...]]:
        """Each text's terms in order."""
        found: list[list[tuple[int, str]]] = [[] for _ in texts]
        for doc, offset, term in self._run(texts, "SELECT doc, offset, term FROM tok_v"):
            found[doc].append((offset, term))
        return [tuple(t for _, t in sorted(f)) for f in found]

    def term_rows(self, texts: list[str]) -> list[tuple[str, int, int]]:
        """(term, tf, dl) of ``texts``, as memories_terms holds them."""
        return self._run(texts, _TERM_ROWS.format(src="tok_v"))

    def posting_rows(self, rows: list[tuple[int, str, str]]) -> list[tuple[str, int, int, int]]:
        """(term, tf, dl, rid) of ``rows`` (rid, content, tenant_tok), as memories_postings
        holds them: dl counts both columns' tokens, as the index's own row length does."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO tok (rowid, content, tenant_tok) VALUES (?, ?, ?)", rows
                )
                return self._db.execute(_POSTING_ROWS.format(src="tok_v")).fetchall()
            finally:
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:  # after a call a worker thread still runs
            self._db.close()


def _score(tfs: list[int], dl: int, idfs: list[float], avgdl: float) -> float:
    """bm25() of a row holding the query's words ``tfs`` times (0: not at all) in ``dl``
    tokens, computed as FTS5 computes it (the same operations in the same order, so the
    same double): every plan's answer orders alike, ties included."""
    score = 0.0
    for tf, idf in zip(tfs, idfs, strict=True):
        score += idf * _factor(tf, dl, avgdl) if tf else 0.0
    return score


def _outside(most: list[float], lacks_one: bool) -> float:
    """The most a row not read can score: each word's next level, summed in the query's
    order (as the row's own score is, so rounding keeps the order); with ``lacks_one``,
    the row lacks some word: the best such sum with one word left out."""
    skips: list[int | None] = list(range(len(most))) if lacks_one else [None]
    sums = []
    for skip in skips:
        total = 0.0
        for i, gain in enumerate(most):
            total += 0.0 if i == skip else gain
        sums.append(total)
    return max(sums)


class _Walk:
    """The top k of a query by memories_postings, on a read-only connection of its own
    (its many small statements run in one worker-thread hop, in one read transaction).

    Each word's rows are read level by level, a level being one (tf, dl) of the word:
    within a tf, a shorter row scores higher, so a level's score is the most any row
    not yet read can get from that word. The level read next is the one that can add the
    most; the rows read are scored exactly (their other words' counts from the same
    table). Any row not read scores at most the sum of the words' next levels (each
    term no more than its level's, summed in the same order): once the k-th row read beats
    that sum, no row outside can reach it. Ties are whole levels read, ordered by rid as
    the FTS5 plans order them. Calls block: run them in a worker thread."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA query_only = ON")
        self._db.execute("PRAGMA busy_timeout = 5000")
        # the walk reads rows and postings by rid, all over the file: mapped, those reads
        # cost no system call and no copy into a page cache of this connection's own
        self._db.execute(f"PRAGMA mmap_size = {_WALK_MMAP}")

    def top(
        self, terms: list[str], idfs: list[float], tfs: list[list[int]], avgdl: float,
        where: str, params: list[Any], k: int, every: str | None,
    ) -> list[tuple[int, float]] | None:  # fmt: skip
        """(rid, score) of the best ``k`` rows passing ``where``, best first (ties by
        rid); None when that takes more than ``WALK_BUDGET`` rows. ``every``: an FTS5
        MATCH of the rows holding every word, whose best are ranked first by bm25() (few
        rows, and usually the best): then a row not read either lacks some word (at most
        the sum of all words' levels but one) or holds them all (at most the last of
        those ranked, if they were not all)."""
        with self._lock:
            self._db.execute("BEGIN")
            try:
                return self._top(terms, idfs, tfs, avgdl, where, params, k, every)
            finally:
                self._db.execute("COMMIT")

    def _next_dl(self, term: str, tf: int, after: int) -> int | None:
        row = self._db.execute(
            "SELECT min(dl) FROM memories_postings WHERE term = ? AND tf = ? AND dl > ?",
            (term, tf, after),
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def _top(
        self, terms: list[str], idfs: list[float], tfs: list[list[int]], avgdl: float,
        where: str, params: list[Any], k: int, every: str | None,
    ) -> list[tuple[int, float]] | None:  # fmt: skip
        level: dict[tuple[int, int], int] = {}  # (word, tf) -> its next unread length
        for i, term in enumerate(terms):
            for tf in tfs[i]:
                if (dl := self._next_dl(term, tf, -1)) is not None:
                    level[(i, tf)] = dl
        seen: set[int] = set()
        best: list[tuple[float, int]] = []  # (-score, rid) of rows passing the filters
        beyond: float | None = None  # the most a row holding every word not read can score
        if every is not None:
            depth = 4 * k + 32
            ranked = self._db.execute(
                "SELECT rowid, -bm25(memories_fts, 1.0, 0.0) FROM memories_fts "
                "WHERE memories_fts MATCH ? ORDER BY 2 DESC, 1 LIMIT ?",
                (every, depth),
            ).fetchall()
            seen.update(r for r, _ in ranked)
            best += self._scored([r for r, _ in ranked], terms, idfs, avgdl, where, params)
            beyond = ranked[-1][1] if len(ranked) == depth else None
        while True:
            most = [0.0] * len(terms)
            pick: tuple[int, int] | None = None
            for (i, tf), dl in level.items():
                gain = idfs[i] * _factor(tf, dl, avgdl)
                most[i] = max(most[i], gain)
                if pick is None or gain > idfs[pick[0]] * _factor(pick[1], level[pick], avgdl):
                    pick = (i, tf)
            outside = _outside(most, every is not None)
            if beyond is not None:
                outside = max(outside, beyond)
            best.sort()
            if pick is None or (len(best) >= k and _proved(-best[k - 1][0], outside)):
                return [(rid, -neg) for neg, rid in best[:k]]
            if len(seen) > WALK_BUDGET:
                return None
            i, tf = pick
            dl = level[pick]
            rids = [
                r for (r,) in self._db.execute(
                    "SELECT rid FROM memories_postings WHERE term = ? AND tf = ? AND dl = ?",
                    (terms[i], tf, dl),
                ) if r not in seen
            ]  # fmt: skip
            if (after := self._next_dl(terms[i], tf, dl)) is None:
                del level[pick]
            else:
                level[pick] = after
            seen.update(rids)
            best += self._scored(rids, terms, idfs, avgdl, where, params)

    def _scored(
        self, rids: list[int], terms: list[str], idfs: list[float], avgdl: float,
        where: str, params: list[Any],
    ) -> list[tuple[float, int]]:  # fmt: skip
        """(-score, rid) of the ``rids`` that pass ``where``."""
        if not rids:
            return []
        ids = json.dumps(rids)
        passing = {
            r for (r,) in self._db.execute(
                # CROSS JOIN: look the rows up by rid, never scan the tenant's for them
                "SELECT m.rid FROM json_each(?) AS j CROSS JOIN memories m ON m.rid = j.value "
                f"WHERE {where}",
                (ids, *params),
            )
        }  # fmt: skip
        counts: dict[int, tuple[list[int], int]] = {}
        index = {t: i for i, t in enumerate(terms)}
        marks = ", ".join("?" * len(index))
        for rid, term, tf, dl in self._db.execute(
            "SELECT rid, term, tf, dl FROM memories_postings "
            f"WHERE rid IN (SELECT value FROM json_each(?)) AND term IN ({marks})",
            (json.dumps(sorted(passing)), *index),
        ):
            found = counts.setdefault(rid, ([0] * len(terms), dl))
            for j, t in enumerate(terms):  # two words may be one term (porter)
                if t == term:
                    found[0][j] = tf
        return [(-_score(tf, dl, idfs, avgdl), rid) for rid, (tf, dl) in counts.items()]

    def close(self) -> None:
        with self._lock:  # after a call a worker thread still runs
            self._db.close()


class SecondServerError(RuntimeError):
    """Another process serves this SQLite file."""


def _serve_alone(path: Path) -> int:
    """Hold ``<file>.serving`` locked while this backend is open. Each serving process keeps
    every tenant's vectors in memory (``TenantVectors``), so a second process on the same
    file would answer from vectors that miss the first one's writes: refuse it plainly.
    The kernel drops the lock when the holder dies, even by ``kill -9``."""
    lock_path = path.with_name(path.name + ".serving")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SecondServerError(
            f"another process is serving {path}: the sqlite backend allows one serving "
            "process per file (replicas need the postgres or redis backend)"
        ) from None
    return fd


class SqliteBackend(MemoryBackend):
    name = "sqlite"

    def __init__(self, path: Path, dim: int) -> None:
        self.path = path
        self.dim = dim
        self._db: aiosqlite.Connection | None = None
        self._write = asyncio.Lock()
        self._cache: dict[str, TenantVectors] = {}
        self._serving: int | None = None  # the lock file's descriptor while open
        self._terms: _KeptWords[tuple[str, ...]] = _KeptWords()  # a word's index terms
        self._df: _KeptWords[int] = _KeptWords()  # a word's rows, as of ``_CHANGED``
        self._tokenizer: _Tokenizer | None = None  # while open
        self._walk: _Walk | None = None  # while open
        self._pending = True  # rows may wait in memories_pending

    @property
    def db(self) -> aiosqlite.Connection:
        return opened(self._db)

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._serving = _serve_alone(self.path)
        self._db = await aiosqlite.connect(self.path)
        self._tokenizer = _Tokenizer()
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.execute("PRAGMA busy_timeout=5000")
        await self._db.executescript(_SCHEMA)
        await self._db.execute(_INDEX_VOCAB)
        async with self._db.execute("PRAGMA user_version") as cur:
            version = int((await cur.fetchone() or (0,))[0])
        if version < _VERSION:  # memories_terms is new: read it off the index once
            await self._rebuild_terms()
            await self._db.execute(f"PRAGMA user_version = {_VERSION}")
        await self._db.commit()
        self._walk = _Walk(self.path)

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._tokenizer is not None:
            self._tokenizer.close()
            self._tokenizer = None
        if self._walk is not None:
            self._walk.close()
            self._walk = None
        if self._serving is not None:
            os.close(self._serving)  # releases the lock
            self._serving = None

    async def _fold_terms(self) -> None:
        """Fold the rows written since the last fold (memories_pending) into
        memories_terms, in one transaction."""
        async with self._write:
            async with self.db.execute(
                "SELECT m.rid, m.content, m.tenant_tok FROM memories_pending p "
                "JOIN memories m ON m.rid = p.rid"
            ) as cur:
                rows = [tuple(row) for row in await cur.fetchall()]
            try:
                for start in range(0, len(rows), _FOLD_CHUNK):
                    await self._note_terms(rows[start : start + _FOLD_CHUNK])
                await self.db.execute("DELETE FROM memories_pending")
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise
            self._pending = False

    async def _note_terms(self, rows: list[tuple[int, str, str]]) -> None:
        """Fold rows' (rid, content, tenant_tok) into memories_terms and memories_postings
        (a changed row's old postings went with the change, by trigger)."""
        tokenizer = opened(self._tokenizer)
        terms = await anyio.to_thread.run_sync(tokenizer.term_rows, [r[1] for r in rows])
        postings = await anyio.to_thread.run_sync(tokenizer.posting_rows, rows)
        await self.db.executemany(
            "INSERT INTO memories_terms (term, tf, dl) VALUES (?, ?, ?) "
            "ON CONFLICT (term, tf) DO UPDATE SET dl = excluded.dl WHERE excluded.dl < dl",
            terms,
        )
        await self.db.executemany(
            "INSERT OR REPLACE INTO memories_postings (term, tf, dl, rid) VALUES (?, ?, ?, ?)",
            postings,
        )

    async def _rebuild_terms(self) -> None:
        """memories_terms and memories_postings from the index alone (migration, and
        after an erase)."""
        await self.db.execute("DELETE FROM memories_pending")
        await self.db.execute("DELETE FROM memories_terms")
        await self.db.execute(
            "INSERT INTO memories_terms (term, tf, dl) " + _TERM_ROWS.format(src="temp.hanzo_fts_v")
        )
        await self.db.execute("DELETE FROM memories_postings")
        await self.db.execute(
            "INSERT INTO memories_postings (term, tf, dl, rid) "
            + _POSTING_ROWS.format(src="temp.hanzo_fts_v")
        )

    async def _vectors(self, tenant: str) -> TenantVectors:
        tv = self._cache.get(tenant)
        if tv is not None:
            return tv
        tv = TenantVectors(self.dim)
        async with self.db.execute(
            "SELECT id, user, namespace, created_at, expires_at, vector FROM memories "
            "WHERE tenant = ?",
            (tenant,),
        ) as cur:
            rows = list(await cur.fetchall())
        if rows:
            vecs = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32)
            tv.put(
                [r[0] for r in rows], vecs.reshape(len(rows), self.dim), [r[1] for r in rows],
                [r[2] for r in rows], [r[3] for r in rows], [r[4] for r in rows],
            )  # fmt: skip
        self._cache[tenant] = tv
        return tv

    async def maintain(self) -> None:
        """Fold written rows into memories_terms; build HNSW indexes for large cached
        tenants, in a worker thread."""
        if self._pending:
            await self._fold_terms()
        for tv in list(self._cache.values()):
            if not tv.needs_index():
                continue
            rows, vecs = tv.snapshot()
            try:
                index = await anyio.to_thread.run_sync(
                    TenantVectors.build_index, self.dim, rows, vecs
                )
            except BaseException:
                tv.abandon_build()
                raise
            tv.install(index)

    async def upsert(self, records: list[Record]) -> None:
        if not records:
            return
        async with self._write:
            try:
                await self.db.executemany(_UPSERT, [_row(r) for r in records])
                await self.db.commit()
                self._pending = True
            except BaseException:
                await self.db.rollback()
                raise
        for tenant, recs in by_tenant(records).items():
            tv = self._cache.get(tenant)
            if tv is not None:
                tv.put(
                    [r.id for r in recs], np.stack([r.vector for r in recs]),
                    [r.user for r in recs], [r.namespace for r in recs],
                    [r.created_at for r in recs], [r.expires_at for r in recs],
                )  # fmt: skip

    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        if not ids:
            return []
        marks = ", ".join("?" * len(ids))
        sql = f"{_SELECT} WHERE m.tenant = ? AND m.id IN ({marks})"
        async with self.db.execute(sql, (tenant, *ids)) as cur:
            found = {r.id: r for r in map(_record, await cur.fetchall())}
        return [found[i] for i in ids if i in found]

    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        sql = (
            "SELECT user, namespace, content_hash, id FROM memories WHERE tenant = ? "
            f"AND content_hash IN ({', '.join('?' * len(hashes))}) AND expires_at > ?"
        )
        async with self.db.execute(sql, (tenant, *hashes, now)) as cur:
            return [(u, ns, h, mid) for u, ns, h, mid in await cur.fetchall()]

    async def delete(self, tenant: str, ids: list[str]) -> int:
        if not ids:
            return 0
        marks = ", ".join("?" * len(ids))
        async with self._write:
            cur = await self.db.execute(
                f"DELETE FROM memories WHERE tenant = ? AND id IN ({marks})", (tenant, *ids)
            )
            await self.db.commit()
        if tv := self._cache.get(tenant):
            tv.remove(ids)
        return cur.rowcount

    async def erase(self, tenant: str, user: str | None) -> list[str]:
        sql, params = "SELECT id FROM memories WHERE tenant = ?", [tenant]
        if user is not None:
            sql, params = sql + " AND user = ?", [*params, user]
        async with self._write:
            async with self.db.execute(sql, params) as cur:
                ids = [row[0] for row in await cur.fetchall()]
            # freed pages are zeroed, the full-text index is merged (a deleted row's terms
            # otherwise stay in older FTS5 segments), and the WAL is emptied into the file
            await self.db.execute("PRAGMA secure_delete = ON")
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                await self.db.execute(
                    f"DELETE FROM memories WHERE tenant = ? AND id IN ({marks})",
                    (tenant, *chunk),
                )
            await self.db.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
            await self._rebuild_terms()  # no erased row's words or lengths stay behind
            await self.db.commit()
            await self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if tv := self._cache.get(tenant):
            tv.remove(ids)
        return ids

    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        where, params = _where(q)
        if after is not None:
            where += " AND (m.created_at > ? OR (m.created_at = ? AND m.id > ?))"
            params += [after[0], after[0], after[1]]
        sql = f"{_SELECT} WHERE {where} ORDER BY m.created_at, m.id LIMIT ?"
        async with self.db.execute(sql, (*params, limit)) as cur:
            return [_record(r) for r in await cur.fetchall()]

    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        tv = await self._vectors(q.tenant)
        exact = not q.tags and not q.metadata
        hits: list[tuple[str, float]] = []
        seen: set[str] = set()  # a store while the filter is read shifts the next page
        skip, batch = 0, k if exact else max(4 * k, 64)
        while len(hits) < k:
            page = tv.top(q, vector, batch, skip)
            if not page:
                break
            cand = [c for c in page if c[0] not in seen]
            seen.update(c[0] for c in cand)
            if exact:
                hits += cand
            else:
                ok = await self._matching(q, [c[0] for c in cand])
                hits += [c for c in cand if c[0] in ok]
            skip += batch
            batch *= 2
        hits = hits[:k]
        records = {r.id: r for r in await self.get(q.tenant, [h[0] for h in hits])}
        return [(records[i], s) for i, s in hits if i in records]

    async def _matching(self, q: Query, ids: list[str]) -> set[str]:
        """Which of ``ids`` pass every filter, tags and metadata included."""
        where, params = _where(q)
        marks = ", ".join("?" * len(ids))
        sql = f"SELECT m.id FROM memories m WHERE {where} AND m.id IN ({marks})"
        async with self.db.execute(sql, (*params, *ids)) as cur:
            return {row[0] for row in await cur.fetchall()}

    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        words = keyword_terms(text)
        if not words:
            return []
        if self._pending:
            await self._fold_terms()
        counts = await self._counts(words)
        df = counts.df
        terms = sorted((w for w in words if df[w]), key=df.__getitem__)
        if not terms:
            return []
        weights = _weights(terms, counts)
        where, params = _where(q)
        if WALK and sum(df[t] for t in terms) > RANK_BUDGET:
            walked = await self._walked(terms, counts, where, params, k)
            if walked is not None:
                return walked
        for plan in _plans(terms, df, weights, tenant_token(q.tenant)):
            hits = await self._ranked(plan, where, params, k)
            if hits is not None:
                return hits
        raise AssertionError("the last plan is complete")  # pragma: no cover

    async def _walked(
        self, words: list[str], counts: _Counts, where: str, params: list[Any], k: int
    ) -> list[tuple[Record, float]] | None:
        """The top k by walking memories_postings (``_Walk``); None when a word is several
        index terms (a phrase, whose count in a row the table does not hold) or the walk
        would read more than ``WALK_BUDGET`` rows."""
        if any(len(counts.terms[w]) != 1 or counts.terms[w][0] not in counts.seen for w in words):
            return None
        terms = [counts.terms[w][0] for w in words]
        stats = counts.stats
        df = [counts.df[w] for w in words]
        every = None  # the rows holding every word, when few are likely to
        if len(words) > 1 and math.prod(df) / stats.rows ** (len(df) - 1) <= EVERY_MAX:
            every = " AND ".join(_phrases([w]) for w in words)
        top = await anyio.to_thread.run_sync(
            opened(self._walk).top,
            terms,
            [_idf(counts.df[w], stats.rows) for w in words],
            [sorted({tf for tf, _ in counts.seen[t]}, reverse=True) for t in terms],
            stats.avgdl,
            where,
            params,
            k,
            every,
        )
        if top is None:
            return None
        sql = f"{_SELECT} WHERE m.rid IN (SELECT value FROM json_each(?))"
        async with self.db.execute(
            sql.replace("SELECT ", "SELECT m.rid, ", 1), (json.dumps([r for r, _ in top]),)
        ) as cur:
            found = {row[0]: _record(row[1:]) for row in await cur.fetchall()}
        return [(found[rid], score) for rid, score in top if rid in found]

    async def _counts(self, words: list[str]) -> _Counts:
        """Each word's document frequency, its terms' entries in memories_terms and the
        index's statistics, in one statement (one read of the index, one trip to the
        database thread). A frequency is counted once and kept while the database is
        unchanged (``_CHANGED``): counting a common word's rows was most of a slow
        query."""
        terms = await self._index_terms(words)
        wanted = sorted({t for w in words for t in terms[w]})
        unique = list(dict.fromkeys(words))
        known, known_version = self._df.known(unique), self._df.version
        count = "(SELECT COUNT(*) FROM memories_fts WHERE memories_fts MATCH ?)"
        while True:
            counted = [w for w in unique if w not in known]
            columns = [count] * len(counted) + [
                _CHANGED,
                "(SELECT block FROM memories_fts_data WHERE id = 1)",
                "(SELECT json_group_array(json_array(term, tf, dl)) FROM memories_terms "
                f"WHERE term IN ({', '.join('?' * len(wanted))}))",
            ]
            params = [_phrases([w]) for w in counted] + wanted
            async with self.db.execute(f"SELECT {', '.join(columns)}", params) as cur:
                row = await cur.fetchone()
            assert row is not None
            version = row[-3]
            if not known or version == known_version:
                break
            known = {}  # written since they were counted: count every word again
        new = dict(zip(counted, map(int, row[: len(counted)]), strict=True))
        self._df.keep(new, version)
        df = known | new
        seen: dict[str, list[tuple[int, int]]] = {}
        for term, tf, dl in json.loads(row[-1] or "[]"):
            seen.setdefault(term, []).append((int(tf), int(dl)))
        return _Counts(
            df=df,
            stats=_index_stats(row[-2]),
            terms=terms,
            seen=seen,
        )

    async def _index_terms(self, words: list[str]) -> dict[str, tuple[str, ...]]:
        """Each word's terms as the index stores them (stemmed, diacritics folded),
        tokenized by FTS5 with the index's tokenizer."""
        known = self._terms.known(words)
        new = [w for w in dict.fromkeys(words) if w not in known]
        if not new:
            return known
        terms = await anyio.to_thread.run_sync(opened(self._tokenizer).terms, new)
        found = dict(zip(new, terms, strict=True))
        self._terms.keep(found)
        return known | found

    async def _ranked(
        self, plan: _Plan, where: str, params: list[Any], k: int
    ) -> list[tuple[Record, float]] | None:
        """The plan's best ``k`` rows passing the filters; None when the plan cannot prove
        they are the query's best (a row outside its candidates might outrank them)."""
        # Rank inside FTS5 first, then join and filter only the best candidates; widen
        # while the tenant and filters reject too many.
        score = "bm25(memories_fts, 1.0, 0.0)"
        ranked = " UNION ALL ".join(
            f"SELECT rowid AS hit, {score} AS r FROM memories_fts WHERE memories_fts MATCH ?"
            for _ in plan.matches
        )
        if len(plan.matches) > 1:  # a row in both: the second query scores all its words
            ranked = f"SELECT hit, MIN(r) AS r FROM ({ranked}) GROUP BY hit"
        sql = (
            f"WITH hits AS MATERIALIZED ({ranked} ORDER BY r, hit LIMIT ?) "
            f"{_SELECT.replace('FROM memories m', ', -hits.r AS score')} "
            f"FROM hits JOIN memories m ON m.rid = hits.hit WHERE {where} "
            "ORDER BY hits.r, hits.hit LIMIT ?"
        )
        depth = 4 * k + 32
        while True:
            async with self.db.execute(sql, (*plan.matches, depth, *params, k)) as cur:
                found = [(_record(r), float(r[16])) for r in await cur.fetchall()]
            if len(found) >= k or depth >= plan.size:
                break
            depth *= 8
        if plan.outside is None:
            return found
        if len(found) >= k and _proved(found[k - 1][1], plan.outside):
            return found
        return None

    async def usage(self, tenant: str) -> Usage:
        async with self.db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM memories WHERE tenant = ?", (tenant,)
        ) as cur:
            row = await cur.fetchone()
        assert row is not None
        return Usage(count=int(row[0]), bytes=int(row[1]))

    async def purge_expired(self, tenant: str, now: int) -> int:
        async with self._write:
            cur = await self.db.execute(
                "DELETE FROM memories WHERE tenant = ? AND expires_at <= ? RETURNING id",
                (tenant, now),
            )
            ids = [r[0] for r in await cur.fetchall()]
            await self.db.commit()
        if ids and (tv := self._cache.get(tenant)):
            tv.remove(ids)
        return len(ids)
