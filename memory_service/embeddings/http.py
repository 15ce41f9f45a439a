"""OpenAI-compatible ``POST /embeddings`` client (the inference gateway's embeddings server)."""

from __future__ import annotations

import httpx
import numpy as np
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from hanzo_contract.request_id import propagate
from memory_service.embeddings.base import Embedder, EmbeddingError, normalize


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    return isinstance(exc, httpx.HTTPStatusError) and (
        exc.response.status_code == 429 or exc.response.status_code >= 500
    )


class HttpEmbedder(Embedder):
    def __init__(
        self,
        base_url: str,
        model: str,
        dim: int,
        *,
        api_key: str | None = None,
        timeout: float = 10.0,
        attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.model = model
        self.dim = dim
        self._attempts = attempts
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            transport=transport,
            event_hooks={"request": [propagate]},
        )

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception(_retryable),
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.1, max=2.0),
                reraise=True,
            ):
                with attempt:
                    resp = await self._client.post(
                        "/embeddings", json={"model": self.model, "input": texts}
                    )
                    resp.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise EmbeddingError(f"embeddings server answered {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise EmbeddingError(f"embeddings server unreachable: {type(exc).__name__}") from None
        try:
            data = sorted(resp.json()["data"], key=lambda d: d["index"])
            rows = np.array([d["embedding"] for d in data], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingError(f"malformed embeddings response: {exc}") from None
        if rows.shape != (len(texts), self.dim):
            raise EmbeddingError(
                f"embeddings server returned shape {rows.shape}, "
                f"expected ({len(texts)}, {self.dim})"
            )
        return normalize(rows)

    async def aclose(self) -> None:
        await self._client.aclose()
