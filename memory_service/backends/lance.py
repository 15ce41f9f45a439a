"""LanceDB backend: one table per tenant, ANN index (IVF_SQ) and native full-text index.

A table per tenant makes search cost follow the tenant's size and keeps tenants apart
physically, so reads filter on nothing but what the caller asked for (the table is the
tenant). Rows written after an index build are still found (Lance scans unindexed
fragments exactly); :meth:`maintain` builds the vector index once a table is large enough
and folds new rows into both indexes.

What a query costs here (profiled at 100k rows, issue 14; memory_service/README.md,
"LanceDB search cost"): LanceDB's synchronous API runs each call on a background event
loop, two thread hops and about 2 ms more than its async API, which this backend uses
throughout. The IVF index is asked for ``3 * sqrt(rows)`` partitions by their size
(lancedb 0.40 ignores ``num_partitions``) and a search probes ``nprobes`` of them (an open
maximum made Lance probe all: every row compared). Lance's take of the result rows costs
about 0.3 ms per column, so new tables also store what a result shows, bar the content,
packed as one JSON column that searches read. Writes to a table are serialised by one lock.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import FTS, IvfSq

from memory_service.backends.base import (
    MemoryBackend,
    Query,
    Record,
    Usage,
    by_tenant,
    keyword_terms,
)
from memory_service.bounds import readable_metadata

#: Build the vector index once a tenant has this many rows; below it an exact scan is fast.
INDEX_MIN_ROWS = 20_000

#: More IVF partitions than any table has (``index_partitions``: 3,000 at 1M rows); Lance
#: probes as many as there are.
EVERY_PARTITION = 1_000_000

#: A record's fields other than its content, stored once more packed as one JSON column
#: (``record``) that searches and listings read instead of ten: Lance's take of the result
#: rows costs about 0.3 ms per column fetched, whatever its width (3.4 ms of a 9 ms
#: vector search at 100k). The separate columns stay for filters.
PACKED = ("id", "user", "namespace", "content_hash", "metadata", "tags", "importance",
          "created_at", "updated_at", "expires_at")  # fmt: skip


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _list(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _where(q: Query) -> str:
    """The query's filters within the tenant's own table (so no condition on the tenant)."""
    conds = [
        f"user IN ({', '.join(_lit(u) for u in q.users)})",
        f"expires_at > {int(q.now)}",
    ]
    if q.namespace is not None:
        conds.append(f"namespace = {_lit(q.namespace)}")
    if q.created_after is not None:
        conds.append(f"created_at > {int(q.created_after)}")
    if q.created_before is not None:
        conds.append(f"created_at < {int(q.created_before)}")
    if q.tags:
        conds.append(f"array_has_all(tags, {_list(q.tags)})")
    if q.meta_kv:
        conds.append(f"array_has_all(meta_kv, {_list(q.meta_kv)})")
    return " AND ".join(conds)


def index_partitions(rows: int) -> int:
    """IVF partitions for a table of ``rows``: ``3 * sqrt(rows)``, about 100 rows each at
    100k. Against ``sqrt(rows)`` (316 of 316 rows) probed for equal recall, a third of
    the rows are compared; more partitions would make the build's k-means slower still."""
    return max(1, round(3 * math.sqrt(rows)))


class LanceBackend(MemoryBackend):
    name = "lancedb"

    def __init__(
        self, path: Path, dim: int, nprobes: int = 80, refine_factor: int | None = 2
    ) -> None:
        self.path = path
        self.dim = dim
        self.nprobes = nprobes
        self.refine_factor = refine_factor
        self._db: Any = None
        self._tables: dict[str, Any] = {}
        self._lock = anyio.Lock()
        self.schema = pa.schema(
            [
                pa.field("tenant", pa.string()),
                pa.field("id", pa.string()),
                pa.field("user", pa.string()),
                pa.field("namespace", pa.string()),
                pa.field("content", pa.string()),
                pa.field("content_hash", pa.string()),
                pa.field("metadata", pa.string()),
                pa.field("meta_kv", pa.list_(pa.string())),
                pa.field("tags", pa.list_(pa.string())),
                pa.field("importance", pa.float64()),
                pa.field("created_at", pa.int64()),
                pa.field("updated_at", pa.int64()),
                pa.field("expires_at", pa.int64()),
                pa.field("size", pa.int64()),
                pa.field("vector", pa.list_(pa.float32(), dim)),
                pa.field("record", pa.string()),
            ]
        )
        #: Per tenant: whether its table has the ``record`` column (tables created
        #: before it was added have not, and are read and written column by column).
        self._packed: dict[str, bool] = {}

    @property
    def result_columns(self) -> list[str]:
        """What a returned record is made of, column by column: not the vector, which
        searches and listings do not return, nor the tenant (the table's), the size (the
        content's) or the packed copy."""
        skip = ("vector", "tenant", "size", "record", "meta_kv")
        return [f.name for f in self.schema if f.name not in skip]

    def shown_columns(self, tenant: str) -> list[str]:
        """The columns a search or listing of ``tenant`` reads: two where the table has
        the packed ``record``."""
        return ["content", "record"] if self._packed.get(tenant) else self.result_columns

    async def open(self) -> None:
        await anyio.to_thread.run_sync(lambda: self.path.mkdir(parents=True, exist_ok=True))
        self._db = await lancedb.connect_async(str(self.path))

    async def close(self) -> None:
        for table in self._tables.values():
            table.close()
        self._tables.clear()
        self._db = None

    @staticmethod
    def table_name(tenant: str) -> str:
        return "t_" + hashlib.sha256(tenant.encode()).hexdigest()[:40]

    async def _table(self, tenant: str, create: bool) -> Any:
        """The tenant's table, or None when it has none and ``create`` is false."""
        table = self._tables.get(tenant)
        if table is not None:
            return table
        async with self._lock:
            table = self._tables.get(tenant)
            if table is not None:
                return table
            name = self.table_name(tenant)
            try:
                table = await self._db.open_table(name)
            except (FileNotFoundError, ValueError):
                if not create:
                    return None
                table = await self._db.create_table(name, schema=self.schema)
                await table.create_index("content", config=FTS(with_position=False), replace=True)
            self._packed[tenant] = "record" in (await table.schema()).names
            self._tables[tenant] = table
            return table

    def _arrow(self, records: list[Record]) -> pa.Table:
        """Columns named as the record's fields; metadata as JSON, vectors as fixed lists."""
        cols: dict[str, Any] = {
            name: [getattr(r, name) for r in records]
            for name in self.schema.names
            if name not in ("metadata", "vector", "record")
        }
        cols["metadata"] = [json.dumps(r.metadata) for r in records]
        cols["record"] = [
            json.dumps({name: cols[name][i] for name in PACKED}) for i in range(len(records))
        ]
        vecs = np.stack([np.asarray(r.vector, dtype=np.float32) for r in records])
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), self.dim)
        return pa.table(cols, schema=self.schema)

    @staticmethod
    def _record(tenant: str, row: dict[str, Any]) -> Record:
        if row.get("record") is not None:
            row = {**row, **json.loads(row["record"])}
        return Record(
            tenant=tenant, id=row["id"], user=row["user"], namespace=row["namespace"],
            content=row["content"], content_hash=row["content_hash"],
            metadata=readable_metadata(row["metadata"]), tags=list(row["tags"] or []),
            importance=row["importance"], created_at=row["created_at"],
            updated_at=row["updated_at"], expires_at=row["expires_at"],
            vector=np.asarray(row["vector"], dtype=np.float32)
            if "vector" in row else np.zeros(0, dtype=np.float32),
        )  # fmt: skip

    @staticmethod
    async def _rows(query: Any) -> list[dict[str, Any]]:
        return (await query.to_arrow()).to_pylist()

    async def upsert(self, records: list[Record]) -> None:
        for tenant, recs in by_tenant(records).items():
            table = await self._table(tenant, create=True)
            data = self._arrow(recs)
            if not self._packed[tenant]:
                data = data.drop_columns(["record"])
            async with self._lock:
                await (
                    table.merge_insert("id")
                    .when_matched_update_all()
                    .when_not_matched_insert_all()
                    .execute(data)
                )

    async def get(self, tenant: str, ids: list[str]) -> list[Record]:
        if not ids:
            return []
        table = await self._table(tenant, create=False)
        if table is None:
            return []
        where = f"tenant = {_lit(tenant)} AND id IN ({', '.join(_lit(i) for i in ids)})"
        rows = await self._rows(table.query().where(where).limit(len(ids)))
        found = {r.id: r for r in (self._record(tenant, row) for row in rows)}
        return [found[i] for i in ids if i in found]

    async def live_with_hashes(
        self, tenant: str, hashes: list[str], now: int, cap: int
    ) -> list[tuple[str, str, str, str]]:
        table = await self._table(tenant, create=False)
        if table is None:
            return []
        where = (
            f"tenant = {_lit(tenant)} AND expires_at > {int(now)} AND "
            f"content_hash IN ({', '.join(_lit(h) for h in hashes)})"
        )
        cols = ["user", "namespace", "content_hash", "id"]
        rows = await self._rows(table.query().where(where).select(cols).limit(cap))
        return [(r["user"], r["namespace"], r["content_hash"], r["id"]) for r in rows]

    async def delete(self, tenant: str, ids: list[str]) -> int:
        if not ids:
            return 0

        where = f"tenant = {_lit(tenant)} AND id IN ({', '.join(_lit(i) for i in ids)})"
        return await self._delete_where(tenant, where)

    async def _delete_where(self, tenant: str, where: str) -> int:
        """Delete the tenant's rows matching ``where``; returns how many there were."""
        table = await self._table(tenant, create=False)
        if table is None:
            return 0
        async with self._lock:
            n = await table.count_rows(where)
            if n:
                await table.delete(where)
        return n

    async def erase(self, tenant: str, user: str | None) -> list[str]:
        table = await self._table(tenant, create=False)
        if table is None:
            return []
        where = f"tenant = {_lit(tenant)}"
        if user is not None:
            where += f" AND user = {_lit(user)}"
        async with self._lock:
            rows = await self._rows(table.query().where(where).select(["id"]))
            ids = [row["id"] for row in rows]
            if user is None:
                # the tenant's own table: dropping it takes every version and index
                table.close()
                self._tables.pop(tenant, None)
                await self._db.drop_table(self.table_name(tenant))
            elif ids:
                await table.delete(where)
                # a delete only hides rows: compact them away, drop old versions (which
                # time travel could read) and rebuild the indexes without them
                # (Lance warns that a reader of an older version would fail: the table
                # lock is held, and only this process opens the tenant's table)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    await table.optimize(cleanup_older_than=timedelta(0), delete_unverified=True)
        return ids

    async def list(self, q: Query, after: tuple[int, str] | None, limit: int) -> list[Record]:
        table = await self._table(q.tenant, create=False)
        if table is None:
            return []
        where = _where(q)
        if after is not None:
            c, i = int(after[0]), _lit(after[1])
            where += f" AND (created_at > {c} OR (created_at = {c} AND id > {i}))"
        # Lance has no ORDER BY: sort the keys, then fetch one page of rows. A plain query
        # has no limit: one counted first and read later cut off a row written between
        # (an updated row moves to the newest fragment: a listing or export skipped it).
        keys = await table.query().where(where).select(["id", "created_at"]).to_arrow()
        order = sorted(zip(keys["created_at"].to_pylist(), keys["id"].to_pylist(), strict=True))
        page = [i for _, i in order[:limit]]
        if not page:
            return []
        rows = await self._rows(
            table.query()
            .where(f"id IN ({', '.join(_lit(i) for i in page)})")
            .select(self.shown_columns(q.tenant))
            .limit(len(page))
        )
        found = {r.id: r for r in (self._record(q.tenant, row) for row in rows)}
        return [found[i] for i in page if i in found]

    async def _filtered(
        self,
        q: Query,
        k: int,
        query: Any,
        score: str,
        wider: Callable[[], Any] | None = None,
    ) -> list[tuple[Record, dict[str, Any]]]:
        """The ``k`` best of ``query`` that ``q`` admits.

        Lance filters cost more than they save here: a pre-filter evaluates the filter on
        every row of the table, a post-filter adds a take of the filter's columns. The
        ``k`` best are fetched unfiltered (the table is the tenant's) and filtered here by
        the reference semantics, :meth:`Query.matches`. That answer is exact when every
        one passes, or, for full text, when fewer than ``k`` came back (nothing else
        matched); otherwise the search runs again with the filter applied before the index.
        ``wider`` is that search for a vector query: every partition, as the probed ones
        may hold fewer than ``k`` rows or none that pass. ``score`` (Lance's ``_distance``
        or ``_score``) is selected by name: left implicit, Lance logs a deprecation warning
        on every search.
        """
        columns = [*self.shown_columns(q.tenant), score]
        rows = await self._rows(query.select(columns).limit(k))
        hits = [(self._record(q.tenant, row), row) for row in rows]
        passed = [(record, row) for record, row in hits if q.matches(record)]
        if wider is None:  # full text: fewer than k came back when nothing else matched
            done = len(passed) == len(hits) or len(hits) < k
        else:  # the partitions probed may have held fewer than k rows
            done = len(passed) == len(hits) == k
        if done:
            return passed
        rows = await self._rows(
            (wider() if wider else query).where(_where(q)).select(columns).limit(k)
        )
        return [(self._record(q.tenant, row), row) for row in rows]

    def vector_query(self, table: Any, vector: np.ndarray, wide: bool = False) -> Any:
        """The nearest-neighbour search on ``table``, before its columns and limit.

        ``nprobes`` sets both Lance's minimum and maximum partitions: with the maximum
        left open (0), lancedb 0.40 probed every partition on every query, even with the
        k best found in the first few, so the index read the whole table. ``wide`` probes
        every partition, for the pre-filtered retry: its answer is then the filter's exact
        top k (up to the quantised distances refined).
        """
        query = (
            table.query()
            .nearest_to(np.asarray(vector, dtype=np.float32))
            .column("vector")
            .distance_type("cosine")
        )
        if self.refine_factor:
            query = query.refine_factor(self.refine_factor)
        if wide:
            return query.maximum_nprobes(0).minimum_nprobes(EVERY_PARTITION)
        return query.nprobes(self.nprobes)

    async def vector_search(
        self, q: Query, vector: np.ndarray, k: int
    ) -> list[tuple[Record, float]]:
        table = await self._table(q.tenant, create=False)
        if table is None:
            return []
        query = self.vector_query(table, vector)

        def wider() -> Any:
            return self.vector_query(table, vector, wide=True)

        hits = await self._filtered(q, k, query, "_distance", wider)
        return [(record, 1.0 - float(row["_distance"])) for record, row in hits]

    async def keyword_search(self, q: Query, text: str, k: int) -> list[tuple[Record, float]]:
        terms = keyword_terms(text)
        if not terms:
            return []
        table = await self._table(q.tenant, create=False)
        if table is None:
            return []
        query = table.query().nearest_to_text(" ".join(terms), columns="content")
        hits = await self._filtered(q, k, query, "_score")
        return [(record, float(row["_score"])) for record, row in hits]

    async def usage(self, tenant: str) -> Usage:
        table = await self._table(tenant, create=False)
        if table is None:
            return Usage(0, 0)
        sizes = await table.query().select(["size"]).to_arrow()
        col = sizes["size"].to_numpy()
        return Usage(count=len(col), bytes=int(col.sum()))

    async def purge_expired(self, tenant: str, now: int) -> int:
        return await self._delete_where(tenant, f"expires_at <= {int(now)}")

    async def maintain(self) -> None:
        """Build missing vector indexes, fold new rows into the indexes, compact files."""
        for table in list(self._tables.values()):
            async with self._lock:
                if not table.is_open():
                    continue  # erased meanwhile
                indexed = {i.name for i in await table.list_indices()}
                rows = await table.count_rows()
                if "vector_idx" not in indexed and rows >= INDEX_MIN_ROWS:
                    # With ``config``, the first argument names the column.
                    # lancedb 0.40 ignores IvfSq's ``num_partitions`` (100k rows got 4
                    # partitions): the partitions are asked for by their size.
                    size = math.ceil(rows / index_partitions(rows))
                    config = IvfSq(distance_type="cosine", target_partition_size=size)
                    await table.create_index("vector", config=config, replace=True)
                await table.optimize()
