"""Embedders: local ONNX MiniLM (default), OpenAI-compatible HTTP, deterministic (tests)."""

from __future__ import annotations

from memory_service.embeddings.base import Embedder, EmbeddingError
from memory_service.settings import MemorySettings


def make_embedder(settings: MemorySettings) -> Embedder:
    if settings.embedder == "deterministic":
        from memory_service.embeddings.deterministic import DeterministicEmbedder

        return DeterministicEmbedder(settings.embedding_dim)
    if settings.embedder == "http":
        from memory_service.embeddings.http import HttpEmbedder

        if not settings.embedding_url:
            raise RuntimeError("HANZO_MEMORY_EMBEDDING_URL is required for the http embedder")
        key = settings.embedding_api_key.get_secret_value() if settings.embedding_api_key else None
        return HttpEmbedder(
            settings.embedding_url,
            settings.embedding_model,
            settings.embedding_dim,
            api_key=key,
            timeout=settings.embedding_timeout_seconds,
        )
    from memory_service.embeddings.local import LocalMiniLM

    return LocalMiniLM(threads=settings.embedding_threads)


__all__ = ["Embedder", "EmbeddingError", "make_embedder"]
