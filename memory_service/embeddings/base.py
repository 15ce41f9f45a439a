"""The embedder interface: texts in, unit-length float32 rows out."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np


class EmbeddingError(Exception):
    """The embedder failed or answered with vectors of the wrong shape."""


class Embedder(ABC):
    model: str
    dim: int

    @abstractmethod
    async def embed(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, each row unit length."""

    async def embed_query(self, text: str) -> np.ndarray:
        """One search query's row. A query is interactive: an embedder that queues bulk work
        (the local model) serves it at once rather than behind a running import."""
        return (await self.embed([text]))[0]


def normalize(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return rows / norms
