"""One tenant's vectors in memory: exact scan, plus an HNSW index once the tenant is large.

SQLite holds the truth; this is a read cache built from it on first use and kept in step
by the backend's writes (one serving process per database file). Rows hold unit vectors,
so one matrix-vector product gives every cosine similarity; the cheap filters (visibility,
namespace, expiry, time range) are numpy masks, the rest are checked by the backend.

Past :data:`ANN_MIN_ROWS` rows, :meth:`build_index` (run off the request path) adds a
usearch HNSW index (int8). A query then takes candidates from the index, drops those the
mask rejects, and re-scores the rest exactly in float32, so the ranking is exact among the
candidates; a filter that admits few rows is served by an exact scan of just those rows.
"""

from __future__ import annotations

import contextlib

import numpy as np

with contextlib.suppress(ImportError):
    # onnxruntime must be loaded before usearch: imported after it, onnxruntime's native
    # module crashes the process with SIGSEGV (seen with onnxruntime 1.32 + usearch 2.26).
    import onnxruntime  # noqa: F401
from usearch.index import Index

from memory_service.backends.base import NEVER, Query

ANN_MIN_ROWS = 20_000
#: Below this share of the tenant admitted by the filter, scan the admitted rows exactly.
ANN_MIN_SHARE = 0.05
ANN_EF = 128


class TenantVectors:
    def __init__(self, dim: int, capacity: int = 1024) -> None:
        self.dim = dim
        self.n = 0
        self.vecs = np.zeros((capacity, dim), dtype=np.float32)
        self.alive = np.zeros(capacity, dtype=bool)
        self.user = np.zeros(capacity, dtype=np.int32)
        self.ns = np.zeros(capacity, dtype=np.int32)
        self.created = np.zeros(capacity, dtype=np.int64)
        self.expires = np.zeros(capacity, dtype=np.int64)
        self.ids: list[str] = []
        self.row_of: dict[str, int] = {}
        self._codes: dict[str, int] = {}
        self.ann: Index | None = None
        self._building = False
        self._dirty: set[int] = set()

    def _code(self, value: str) -> int:
        return self._codes.setdefault(value, len(self._codes) + 1)

    def _grow(self, need: int) -> None:
        cap = len(self.alive)
        if need <= cap:
            return
        new = max(need, cap * 2)
        for name in ("vecs", "alive", "user", "ns", "created", "expires"):
            old = getattr(self, name)
            grown = np.zeros((new, *old.shape[1:]), dtype=old.dtype)
            grown[: self.n] = old[: self.n]
            setattr(self, name, grown)

    def put(
        self, ids: list[str], vecs: np.ndarray, users: list[str], namespaces: list[str],
        created: list[int], expires: list[int],
    ) -> None:  # fmt: skip
        rows: list[int] = []
        for i, mid in enumerate(ids):
            row = self.row_of.get(mid)
            if row is None:
                self._grow(self.n + 1)
                row = self.n
                self.n += 1
                self.ids.append(mid)
                self.row_of[mid] = row
            self.vecs[row] = vecs[i]
            self.alive[row] = True
            self.user[row] = self._code(users[i])
            self.ns[row] = self._code(namespaces[i])
            self.created[row] = created[i]
            self.expires[row] = expires[i]
            rows.append(row)
        self._touch(rows, add=True)

    def _touch(self, rows: list[int], add: bool) -> None:
        """Keep the index (and a build in progress) in step with changed rows."""
        if self._building:
            self._dirty.update(rows)
        if self.ann is None or not rows:
            return
        keys = np.asarray(rows, dtype=np.uint64)
        present = np.asarray([self.ann.contains(int(k)) for k in keys], dtype=bool)
        if present.any():
            self.ann.remove(keys[present])
        if add:
            self.ann.add(keys, self.vecs[rows], threads=1)

    def remove(self, ids: list[str]) -> None:
        rows = []
        for mid in ids:
            row = self.row_of.pop(mid, None)
            if row is not None:
                self.alive[row] = False
                rows.append(row)
        self._touch(rows, add=False)
        if self.n > 4096 and len(self.row_of) < self.n // 2 and not self._building:
            self._compact()

    def _compact(self) -> None:
        keep = np.flatnonzero(self.alive[: self.n])
        for name in ("vecs", "alive", "user", "ns", "created", "expires"):
            arr = getattr(self, name)
            arr[: len(keep)] = arr[keep]
        self.ids = [self.ids[i] for i in keep]
        self.n = len(keep)
        self.alive[self.n :] = False
        self.row_of = {mid: i for i, mid in enumerate(self.ids)}
        self.ann = None  # row numbers changed; the next maintenance rebuilds it

    # -- HNSW index ----------------------------------------------------------------------

    @property
    def live(self) -> int:
        return len(self.row_of)

    def needs_index(self) -> bool:
        return self.ann is None and not self._building and self.live >= ANN_MIN_ROWS

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Rows and a copy of their vectors to build from; later changes are recorded."""
        self._building = True
        self._dirty = set()
        rows = np.flatnonzero(self.alive[: self.n]).astype(np.uint64)
        return rows, self.vecs[rows.astype(np.int64)].copy()

    @staticmethod
    def build_index(dim: int, rows: np.ndarray, vecs: np.ndarray, threads: int = 2) -> Index:
        """CPU-heavy: call from a worker thread."""
        index = Index(ndim=dim, metric="cos", dtype="i8", connectivity=16,
                      expansion_add=128, expansion_search=ANN_EF)  # fmt: skip
        if len(rows):
            index.add(rows, vecs, threads=threads)
        return index

    def install(self, index: Index) -> None:
        """Adopt a finished build, replaying what changed while it ran."""
        dirty, self._dirty, self._building = sorted(self._dirty), set(), False
        self.ann = index
        self._touch([r for r in dirty if not self.alive[r]], add=False)
        self._touch([r for r in dirty if self.alive[r]], add=True)

    def abandon_build(self) -> None:
        self._building, self._dirty = False, set()

    def mask(self, q: Query) -> np.ndarray:
        n = self.n
        m = self.alive[:n] & (self.expires[:n] > q.now)
        codes = [self._codes[u] for u in q.users if u in self._codes]
        m &= np.isin(self.user[:n], codes) if codes else False
        if q.namespace is not None:
            m &= self.ns[:n] == self._codes.get(q.namespace, -1)
        if q.created_after is not None:
            m &= self.created[:n] > q.created_after
        if q.created_before is not None:
            m &= self.created[:n] < q.created_before
        return m

    def top(self, q: Query, vector: np.ndarray, k: int, skip: int = 0) -> list[tuple[str, float]]:
        """Rows ``skip .. skip+k`` of the ranking, best first, among rows passing the mask."""
        if self.n == 0:
            return []
        mask = self.mask(q)
        admitted = int(mask.sum())
        want = skip + k
        if self.ann is not None and admitted >= max(ANN_MIN_SHARE * self.live, 4 * want):
            found = self._top_ann(mask, vector, want)
            if found is not None:
                return [(self.ids[i], s) for i, s in found[skip:want]]
        rows = np.flatnonzero(mask)
        if len(rows) == 0:
            return []
        scores = (
            self.vecs[rows] @ vector
            if admitted < self.n // 2
            else (self.vecs[: self.n] @ vector)[rows]
        )
        take = min(want, len(rows))
        best = (
            np.argpartition(-scores, take - 1)[:take] if take < len(rows) else np.arange(len(rows))
        )
        best = best[np.argsort(-scores[best], kind="stable")][skip:take]
        return [(self.ids[rows[i]], float(scores[i])) for i in best]

    def _top_ann(
        self, mask: np.ndarray, vector: np.ndarray, want: int
    ) -> list[tuple[int, float]] | None:
        """Best ``want`` admitted rows from index candidates, exactly re-scored; None if short."""
        assert self.ann is not None
        count = max(4 * want, 40)
        total = len(self.ann)
        while True:
            res = self.ann.search(vector, min(count, total), threads=1)
            keys = np.asarray(res.keys, dtype=np.int64)
            keys = keys[mask[keys]]
            if len(keys) >= want or count >= total:
                scores = self.vecs[keys] @ vector
                order = np.argsort(-scores, kind="stable")[:want]
                return [(int(keys[i]), float(scores[i])) for i in order]
            if count >= 4096:
                return None
            count *= 4


__all__ = ["NEVER", "TenantVectors"]
