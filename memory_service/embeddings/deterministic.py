"""Deterministic hashing embedder: no model, stable across runs, words overlap -> close.

For fast tests and benchmarks only: a bag of hashed word and bigram features, so texts that
share words are near each other, the way a real model behaves for near-duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import itertools

import numpy as np

from memory_service.backends.base import keyword_terms
from memory_service.embeddings.base import Embedder, normalize


class DeterministicEmbedder(Embedder):
    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.model = f"deterministic-hash-{dim}"

    @functools.lru_cache(maxsize=65_536)  # noqa: B019 - bounded, and embedders live long
    def _feature(self, feat: str) -> np.ndarray:
        digest = hashlib.blake2b(feat.encode(), digest_size=16).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return rng.standard_normal(self.dim).astype(np.float32)

    def _one(self, text: str) -> np.ndarray:
        words = keyword_terms(text, limit=512) or [text]
        feats = words + [a + " " + b for a, b in itertools.pairwise(words)]
        return np.sum([self._feature(f) for f in feats], axis=0, dtype=np.float32)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.stack([self._one(t) for t in texts]))
