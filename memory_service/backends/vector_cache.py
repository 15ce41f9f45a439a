"""One tenant's vectors in memory, for an exact scan whose cost follows the tenant's size.

SQLite holds the truth; this is a read cache built from it on first use and kept in step
by the backend's writes (one serving process per database file). Rows hold unit vectors,
so one matrix-vector product gives every cosine similarity; the cheap filters (visibility,
namespace, expiry, time range) are numpy masks, the rest are checked by the backend.
"""

from __future__ import annotations

import numpy as np

from memory_service.backends.base import NEVER, Query


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

    def remove(self, ids: list[str]) -> None:
        for mid in ids:
            row = self.row_of.pop(mid, None)
            if row is not None:
                self.alive[row] = False
        if self.n > 4096 and len(self.row_of) < self.n // 2:
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
        n = self.n
        if n == 0:
            return []
        scores = self.vecs[:n] @ vector
        scores[~self.mask(q)] = -np.inf
        want = min(skip + k, n)
        idx = np.argpartition(-scores, want - 1)[:want] if want < n else np.arange(n)
        idx = idx[np.argsort(-scores[idx], kind="stable")][skip:want]
        return [(self.ids[i], float(scores[i])) for i in idx if scores[i] != -np.inf]


__all__ = ["NEVER", "TenantVectors"]
