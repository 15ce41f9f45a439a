"""Query strings: ``GET /v1/memory/retrieve``'s parameters into one validated model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import QueryParams

from memory_service.body import loads_bounded, validation_details
from memory_service.errors import ApiError
from memory_service.models import Filters

#: parameters that are filters; ``tag`` (repeatable) and ``metadata`` (JSON) are read apart
_FILTERS = ("namespace", "scope", "created_after", "created_before")


class ListParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, min_length=1, max_length=128)
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = None
    filters: Filters


def list_params(query: QueryParams) -> ListParams:
    """Refuses malformed or too deep ``metadata`` JSON (400) and any invalid or unknown
    parameter (422)."""
    raw: dict[str, Any] = {k: v for k, v in query.items() if k not in ("tag", "metadata")}
    filters: dict[str, Any] = {k: raw.pop(k) for k in _FILTERS if k in raw}
    if tags := query.getlist("tag"):
        filters["tags"] = tags
    if "metadata" in query:
        filters["metadata"] = loads_bounded(query["metadata"], "metadata")
    try:
        return ListParams.model_validate({**raw, "filters": filters})
    except ValidationError as exc:
        raise ApiError(
            422, "validation_error", "query parameters are invalid", validation_details(exc)
        ) from None
