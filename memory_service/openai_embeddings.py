"""``POST /v1/embeddings``: the memory service's own model behind the OpenAI embeddings API.

A deployment loads one embedding model, here, and serves it twice: for memories, and to
callers with ``inference:invoke`` (through the inference gateway, which meters the
``usage`` this route reports). Vectors come from the same :class:`Embedder` the memory
API stores with, so a text embedded here lands exactly where the memory service put it.
``usage.prompt_tokens`` counts what the model reads: the shipped all-MiniLM-L6-v2 tokenizer,
special tokens included, truncated at the model's window.
"""

from __future__ import annotations

import base64
import functools
from importlib import resources
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from tokenizers import Tokenizer

from memory_service.auth import requires
from memory_service.body import read_model
from memory_service.errors import ApiError
from memory_service.service import MemoryService

INVOKE = "inference:invoke"
#: all-MiniLM-L6-v2 reads at most this many tokens of a text; the rest is never seen
_MODEL_WINDOW = 256


class EmbeddingsRequest(BaseModel):
    """OpenAI's request shape; token-array input is not supported (400)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = Field(default=None, max_length=256)


@functools.cache
def _tokenizer() -> Tokenizer:
    path = resources.files("memory_service.embeddings").joinpath(
        "data/all-MiniLM-L6-v2/tokenizer.json"
    )
    tokenizer = Tokenizer.from_str(path.read_text())
    tokenizer.enable_truncation(_MODEL_WINDOW)
    tokenizer.no_padding()  # the shipped file pads to a fixed length: padding is not read
    return tokenizer


def count_tokens(texts: list[str]) -> int:
    return sum(len(enc.ids) for enc in _tokenizer().encode_batch(texts))


def model_ids(svc: MemoryService) -> set[str]:
    """The names this route answers to: the embedder's, and its first word (the bare
    model id, ``all-MiniLM-L6-v2``, which is what OpenAI-style clients send)."""
    name = svc.embedder.model
    return {name, name.split(" ", 1)[0]}


def _texts(req: EmbeddingsRequest, svc: MemoryService) -> list[str]:
    texts = [req.input] if isinstance(req.input, str) else req.input
    if not texts:
        raise ApiError(400, "invalid_input", "input must be a string or a non-empty list")
    if len(texts) > svc.settings.max_batch:
        raise ApiError(400, "too_many_inputs", f"at most {svc.settings.max_batch} inputs")
    limit = svc.settings.max_content_chars
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(400, "invalid_input", f"input[{i}] is empty")
        if len(text) > limit:
            raise ApiError(400, "input_too_long", f"input[{i}] exceeds {limit} characters")
    return texts


def _encode(row: np.ndarray, fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(row.astype("<f4").tobytes()).decode()
    return row.tolist()


@requires(INVOKE)
async def embeddings(request: Request) -> Response:
    svc: MemoryService = request.app.state.service
    req = await read_model(request, EmbeddingsRequest, svc.settings.max_body_bytes)
    if req.model not in model_ids(svc):
        raise ApiError(404, "model_not_found", f"model {req.model!r} is not served here")
    if req.dimensions is not None and req.dimensions != svc.embedder.dim:
        raise ApiError(400, "invalid_dimensions", f"this model has {svc.embedder.dim} dimensions")
    texts = _texts(req, svc)
    vectors = await svc.embed_texts(texts)
    tokens = count_tokens(texts)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _encode(row, req.encoding_format)}
            for i, row in enumerate(vectors)
        ],
        "model": req.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    return JSONResponse(body)
