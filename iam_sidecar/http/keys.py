"""Self-service key API behind the gateway: ``/v1/keys`` and ``/v1/usage``.

The caller is the principal in the gateway's signed assertion header. A principal with
``keys:manage`` manages every key of its own organization; anyone else only their own
keys. Keys of other organizations (or, for non-managers, of other users) answer 404, the
same as keys that do not exist, so ids leak nothing.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hanzo_contract.assertion import InvalidAssertion
from hanzo_contract.headers import ASSERTION
from hanzo_contract.openapi import Operation, operation
from hanzo_contract.principal import Limits, Principal, PrincipalKind
from hanzo_contract.scopes import KEYS_MANAGE as MANAGE
from iam_sidecar.errors import KeyNotFound, Unauthenticated, UpstreamUnavailable
from iam_sidecar.http.util import client_address, parse_body, sidecar_state
from iam_sidecar.keys.models import KeyRecord, KeyState, NewKey
from iam_sidecar.records.usage import ModelUsageRow, UsageRow, utc_day


class CreateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(max_length=100)
    owner: str | None = Field(default=None, max_length=255)
    owner_kind: PrincipalKind = PrincipalKind.USER
    expires_in_seconds: float | None = Field(default=None, gt=0, le=10 * 365 * 86400)
    limits: Limits | None = None


class RotateKey(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: float | None = Field(default=None, ge=0)


class KeyView(BaseModel):
    """A key as the API shows it (:meth:`KeyRecord.public`): never the secret or digest."""

    key_id: str
    prefix: str
    organization: str
    owner: str
    owner_kind: PrincipalKind
    name: str
    scopes: list[str]
    limits: Limits | None
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    rotated_at: float | None
    grace_until: float | None
    parent_key_id: str | None
    state: KeyState


class KeyList(BaseModel):
    keys: list[KeyView]


class MintedKey(BaseModel):
    """A new or rotated key: ``key`` is shown this once and never stored in clear."""

    key: str = Field(description="hk-... (shown once)")
    record: KeyView


class UsageReport(BaseModel):
    """``GET /v1/usage``: what the caller's credential may spend, and what was spent.

    The rate limiter's live counters belong to the gateway plugin (in-process or Valkey),
    not to the sidecar: the exact remaining budget of the credential's tightest window is
    in the ``RateLimit``/``RateLimit-Policy`` headers of every allowed answer, this one
    included. The body adds the limits the gateway enforces (from the signed assertion)
    and the day's quota left by the sidecar's usage counters, which trail the limiter by
    at most one usage report interval.
    """

    #: whose limits these are: ``key:<id>`` for a key, ``user:<org/name>`` for a token
    credential: str
    limits: Limits
    #: ``units_per_day`` minus the credential's requests counted today; ``None``: no cap
    remaining_today: int | None
    usage: list[UsageRow]
    models: list[ModelUsageRow]


def caller(request: Request) -> Principal:
    state = sidecar_state(request)
    if state.verifier is None:
        raise UpstreamUnavailable("identity assertion key is not configured")
    token = request.headers.get(ASSERTION)
    if not token:
        raise Unauthenticated(f"missing {ASSERTION} header (call through the gateway)")
    try:
        # for this upstream (the verifier's audience) and for this very request
        raw = request.scope.get("raw_path")
        path = raw.decode("latin-1").partition("?")[0] if raw else request.url.path
        return state.verifier.verify(token, request.method, path)
    except InvalidAssertion:
        raise Unauthenticated("invalid identity assertion") from None


def _visible(principal: Principal, record: KeyRecord) -> bool:
    if record.organization != principal.organization:
        return False
    return principal.has(MANAGE) or record.owner == principal.subject


async def _own_key(request: Request, principal: Principal) -> KeyRecord:
    key_id = request.path_params["key_id"]
    record = await sidecar_state(request).keys.show(principal.organization, key_id)
    if not _visible(principal, record):
        raise KeyNotFound(f"no key {key_id!r} in organization {principal.organization!r}")
    return record


@operation(
    Operation(
        "listKeys",
        "Your keys (every key of your organization with keys:manage)",
        "authenticated",
        response=KeyList,
    )
)
async def list_keys(request: Request) -> Response:
    principal = caller(request)
    store = sidecar_state(request).keys
    owner = None if principal.has(MANAGE) else principal.subject
    records = await store.list(principal.organization, owner=owner)
    now = store.clock()
    return JSONResponse({"keys": [r.public(now) for r in records]})


@operation(
    Operation(
        "createKey",
        "Mint a key: scopes, limits and expiry within your own",
        "authenticated",
        response=MintedKey,
        body=CreateKey,
        status=201,
        errors=(404, 409, 422),
    )
)
async def create_key(request: Request) -> Response:
    principal = caller(request)
    state = sidecar_state(request)
    body = await parse_body(request, CreateKey)
    owner = body.owner or principal.subject
    kind = body.owner_kind if body.owner else principal.kind
    if owner != principal.subject and not principal.has(MANAGE):
        raise KeyNotFound("you may only create keys for yourself")
    # what the caller may hand out (scopes, limits, expiry, keys:manage on a key) is
    # checked, and every refusal audited, by the issuer: iam_sidecar/keys/grants.py
    expires_at = state.keys.clock() + body.expires_in_seconds if body.expires_in_seconds else None
    plaintext, record = await state.issuer.issue(
        NewKey(
            organization=principal.organization,
            owner=owner,
            owner_kind=kind,
            name=body.name,
            scopes=body.scopes,
            expires_at=expires_at,
            limits=body.limits,
        ),
        actor=principal.subject,
        source=client_address(request),
        minter=principal,
    )
    return JSONResponse(
        {"key": plaintext, "record": record.public(state.keys.clock())}, status_code=201
    )


@operation(
    Operation(
        "getKey",
        "One of your keys",
        "authenticated",
        response=KeyView,
        errors=(404,),
    )
)
async def show_key(request: Request) -> Response:
    principal = caller(request)
    record = await _own_key(request, principal)
    return JSONResponse(record.public(sidecar_state(request).keys.clock()))


@operation(
    Operation(
        "rotateKey",
        "A new secret for the key; the old one stays valid for the grace period",
        "authenticated",
        response=MintedKey,
        body=RotateKey,
        body_required=False,
        errors=(404, 409, 422),
    )
)
async def rotate_key(request: Request) -> Response:
    principal = caller(request)
    state = sidecar_state(request)
    record = await _own_key(request, principal)
    body = await parse_body(request, RotateKey)
    grace = body.grace_seconds
    if grace is None:
        grace = state.settings.default_rotate_grace_seconds
    plaintext = await state.issuer.rotate(
        principal.organization,
        record.key_id,
        grace,
        caller=principal,
        actor=principal.subject,
        source=client_address(request),
    )
    fresh = await state.keys.show(principal.organization, record.key_id)
    return JSONResponse({"key": plaintext, "record": fresh.public(state.keys.clock())})


@operation(
    Operation(
        "revokeKey",
        "Revoke the key (every gateway refuses it within the cache bound)",
        "authenticated",
        response=KeyView,
        errors=(404,),
    )
)
async def revoke_key(request: Request) -> Response:
    principal = caller(request)
    state = sidecar_state(request)
    record = await _own_key(request, principal)
    revoked = await state.keys.revoke(
        principal.organization,
        record.key_id,
        actor=principal.subject,
        source=client_address(request),
    )
    return JSONResponse(revoked.public(state.keys.clock()))


@operation(
    Operation(
        "getUsage",
        "Your credential's limits, the day's quota left, and usage per day",
        "authenticated",
        response=UsageReport,
    )
)
async def usage(request: Request) -> Response:
    principal = caller(request)
    state = sidecar_state(request)
    await state.keys.flush()
    day = request.query_params.get("day")
    rows = await state.keys.usage.query(principal.organization, day=day)
    models = await state.keys.usage.query_models(principal.organization, day=day)
    if not principal.has(MANAGE):
        mine = {k.key_id for k in await state.keys.list(principal.organization, principal.subject)}

        def own(level: str, subject: str) -> bool:
            return (level == "user" and subject == principal.subject) or (
                level == "key" and subject in mine
            )

        rows = [r for r in rows if own(r.level, r.subject)]
        models = [m for m in models if own(m.level, m.subject)]
    # the usage counters' level for the credential (the limiter's bucket names the same)
    level, subject = ("key", principal.key_id) if principal.key_id else ("user", principal.subject)
    remaining = None
    cap = principal.limits.units_per_day
    if cap is not None:
        today = utc_day(state.keys.clock())
        counted = await state.keys.usage.query(principal.organization, day=today, level=level)
        spent = sum(r.requests for r in counted if r.subject == subject)
        remaining = max(cap - spent, 0)
    report = UsageReport(
        credential=f"{level}:{subject}",
        limits=principal.limits,
        remaining_today=remaining,
        usage=rows,
        models=models,
    )
    return JSONResponse(report.model_dump(mode="json"))
