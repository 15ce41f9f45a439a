"""Deterministic hashing embedder: no model, stable across runs, words overlap -> close.

For fast tests and benchmarks only: a bag of hashed word and bigram features, so texts that
share words are near each other, the way a real model behaves for near-duplicates.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np

from memory_service.backends.base import keyword_terms
from memory_service.embeddings.base import Embedder, normalize


class DeterministicEmbedder(Embedder):
    def __init__(self, dim: int = 384) -> None:
        self.dim = dim
        self.model = f"deterministic-hash-{dim}"

    def _one(self, text: str) -> np.ndarray:
        row = np.zeros(self.dim, dtype=np.float32)
        words = keyword_terms(text, limit=512) or [text]
        feats = words + [a + " " + b for a, b in itertools.pairwise(words)]
        for feat in feats:
            digest = hashlib.blake2b(feat.encode(), digest_size=16).digest()
            seed = int.from_bytes(digest[:8], "little")
            rng = np.random.default_rng(seed)
            row += rng.standard_normal(self.dim).astype(np.float32)
        return row

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize(np.stack([self._one(t) for t in texts]))
