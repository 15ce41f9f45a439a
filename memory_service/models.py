"""Request and response models: the API's boundary, also the source of the OpenAPI schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from memory_service.bounds import (
    MAX_METADATA_BYTES,
    MAX_METADATA_DEPTH,
    MAX_METADATA_KEYS,
    metadata_problem,
)

Ident = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")]
Namespace = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,64}$")]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, strip_whitespace=True)]
MetaKey = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Scalar = str | int | float | bool | None
Scope = Literal["user", "org"]
Mode = Literal["vector", "keyword", "hybrid"]


def _check_metadata(value: dict[str, Any]) -> dict[str, Any]:
    if (problem := metadata_problem(value)) is not None:
        raise ValueError(problem)
    return value


#: Free-form metadata, bounded so that no stored value can break a reader: the bounds are
#: in the schema (``maxProperties`` and the ``x-max-*`` keys) and in ``/capabilities``.
Metadata = Annotated[
    dict[MetaKey, Any],
    Field(
        max_length=64,
        description=(
            f"At most 64 top-level keys, {MAX_METADATA_KEYS} keys in all nested objects, "
            f"nesting {MAX_METADATA_DEPTH} levels below this object, and "
            f"{MAX_METADATA_BYTES} bytes as JSON."
        ),
        json_schema_extra={
            "x-max-depth": MAX_METADATA_DEPTH,
            "x-max-total-keys": MAX_METADATA_KEYS,
            "x-max-bytes": MAX_METADATA_BYTES,
        },
    ),
    AfterValidator(_check_metadata),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)


def _check_content(value: str) -> str:
    if not value.strip():
        raise ValueError("content must not be empty or blank")
    return value


class MemoryIn(_Strict):
    """One memory to store. ``id`` makes the store an upsert of that memory."""

    content: str = Field(min_length=1)
    id: Ident | None = None
    namespace: Namespace = "default"
    scope: Scope = "user"
    metadata: Metadata = Field(default_factory=dict)
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    importance: float = Field(default=0.5, ge=0.0, le=1.0)
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)
    expires_at: datetime | None = None
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=8192)
    #: store the content encrypted with the tenant's data key (needs a sealing key file);
    #: it is then found by vector search and filters, never by keyword search
    sensitive: bool = False

    _content = field_validator("content")(_check_content)


class ImportLine(MemoryIn):
    """A line of an export file; ``created_at`` is kept when the memory is new."""

    created_at: datetime | None = None
    updated_at: datetime | None = None


class StoreRequest(_Strict):
    memories: list[MemoryIn] = Field(min_length=1)


class StoreItemResult(BaseModel):
    id: str
    status: Literal["created", "updated", "duplicate"]


class StoreResponse(BaseModel):
    ids: list[str]
    results: list[StoreItemResult]


class MemoryOut(BaseModel):
    id: str
    content: str
    namespace: str
    scope: Scope
    user: str | None
    metadata: dict[str, Any]
    tags: list[str]
    importance: float
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None
    sensitive: bool = False


class ListResponse(BaseModel):
    memories: list[MemoryOut]
    next_cursor: str | None


class Filters(_Strict):
    namespace: Namespace | None = None
    tags: list[Tag] = Field(default_factory=list, max_length=32)
    metadata: dict[MetaKey, Scalar] = Field(default_factory=dict, max_length=32)
    scope: Scope | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


class SearchRequest(_Strict):
    query: str = Field(min_length=1, max_length=8192)
    mode: Mode = "hybrid"
    top_k: int = Field(default=10, ge=1)
    min_score: float | None = None
    filters: Filters = Field(default_factory=Filters)
    embedding: list[float] | None = Field(default=None, min_length=1, max_length=8192)

    _query = field_validator("query")(_check_content)


class SearchHit(BaseModel):
    memory: MemoryOut
    score: float
    vector_score: float | None = None
    keyword_score: float | None = None


class SearchResponse(BaseModel):
    mode: Mode
    results: list[SearchHit]


class UpdateRequest(_Strict):
    """Fields to change; content changes re-embed the memory."""

    content: str | None = Field(default=None, min_length=1)
    metadata: Metadata | None = None
    tags: list[Tag] | None = Field(default=None, max_length=32)
    importance: float | None = Field(default=None, ge=0.0, le=1.0)
    ttl_seconds: int | None = Field(default=None, ge=1, le=10 * 365 * 86400)
    expires_at: datetime | None = None

    @field_validator("content")
    @classmethod
    def _content(cls, value: str | None) -> str | None:
        return None if value is None else _check_content(value)


class DeleteResponse(BaseModel):
    id: str
    deleted: bool


class ImportResponse(BaseModel):
    created: int
    updated: int
    duplicate: int
    expired: int  # lines whose expiry had already passed: not imported


class Capabilities(BaseModel):
    backend: str
    search_modes: list[Mode]
    embedding: dict[str, Any]
    limits: dict[str, int]
    features: list[str]
