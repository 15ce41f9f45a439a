"""Endpoints for the gateway plugins: key verification, principal resolution, denials.

All three require the shared verify token. Verification reads only the local store, so
it keeps answering while Casdoor is down.
"""

from __future__ import annotations

import logging
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hanzo_contract.principal import Principal, PrincipalKind
from hanzo_contract.reports import DenialReport, UsageReport
from hanzo_contract.verify import ResolveRequest, VerifyRequest, VerifyResponse
from iam_sidecar.errors import InvalidRequest, KeyVerificationError, UnknownPrincipal
from iam_sidecar.http.util import check_bearer, client_address, parse_body, sidecar_state
from iam_sidecar.keys.principals import key_principal, owner_principal
from iam_sidecar.records import audit
from iam_sidecar.records.denials import write_buckets
from iam_sidecar.state import SidecarState

log = logging.getLogger(__name__)


def _check(request: Request, state: SidecarState) -> None:
    assert state.settings.verify_token is not None
    check_bearer(request, state.settings.verify_token.get_secret_value())


def _answer(principal: Principal, cache_ttl_seconds: float) -> Response:
    """The one body both verify and resolve answer with (``hanzo_contract.verify``)."""
    answer = VerifyResponse(principal=principal, cache_ttl_seconds=cache_ttl_seconds)
    return JSONResponse(answer.model_dump(mode="json"))


def _unknown(state: SidecarState, message: str) -> UnknownPrincipal:
    """A gateway asking about an unknown caller gets 401: the credential names no one."""
    state.metrics.resolve.labels("unknown").inc()
    return UnknownPrincipal(message, status=401)


async def verify_key(request: Request) -> Response:
    state = sidecar_state(request)
    _check(request, state)
    body = await parse_body(request, VerifyRequest)
    started = time.perf_counter()
    try:
        record, grant = await state.keys.verify_with_grant(body.key)
    except KeyVerificationError as exc:
        state.metrics.verify.labels(exc.code).inc()
        raise
    finally:
        state.metrics.verify_seconds.observe(time.perf_counter() - started)
    state.metrics.verify.labels("ok").inc()
    principal = key_principal(record, grant, state.policy.limits_for(record.organization))
    return _answer(principal, state.settings.verify_cache_ttl_seconds)


async def resolve_principal(request: Request) -> Response:
    state = sidecar_state(request)
    _check(request, state)
    body = await parse_body(request, ResolveRequest)
    if body.kind is PrincipalKind.APPLICATION:
        if not body.client_id:
            raise InvalidRequest("client_id is required for kind 'application'")
        found = await state.resolver.application_by_client_id(body.client_id)
        if found is None:
            raise _unknown(state, "no application with that client id")
        owner = f"{found[0]}/{found[1]}"
    else:
        if not body.organization or not body.name:
            raise InvalidRequest("organization and name are required for kind 'user'")
        owner = f"{body.organization}/{body.name}"
    grant = await state.resolver.resolve(owner, body.kind)
    if not grant.active:
        raise _unknown(state, f"{body.kind.value} is unknown or disabled")
    state.metrics.resolve.labels("ok").inc()
    organization = owner.split("/", 1)[0]
    principal = owner_principal(grant, body.kind, state.policy.limits_for(organization))
    return _answer(principal, state.settings.role_cache_ttl_seconds)


async def report_denial(request: Request) -> Response:
    state = sidecar_state(request)
    _check(request, state)
    body = await parse_body(request, DenialReport)
    state.metrics.denials.labels(str(body.status)).inc()
    source = body.client_ip or client_address(request)
    if body.subject is None:
        # anyone can be refused anonymously, as often as they like: counted, not one row each
        state.denials.add(source, body.status, body.reason)
        await write_buckets(state.keys.db, state.denials.closed())
    else:
        async with state.keys.db.transaction() as conn:
            await audit.append(
                conn,
                actor=body.subject,
                action="request.denied",
                outcome=f"{body.status}:{body.reason}",
                organization=body.organization,
                target=f"{body.method or ''} {body.path or ''}".strip() or None,
                source=source,
                details=body.model_dump(
                    exclude_none=True, exclude={"status", "reason", "organization", "client_ip"}
                ),
            )
    if body.organization:
        state.keys.usage.count_denial(body.organization, body.subject, body.key_id)
    return JSONResponse({"recorded": True}, status_code=202)


async def report_usage(request: Request) -> Response:
    state = sidecar_state(request)
    _check(request, state)
    body = await parse_body(request, UsageReport)
    for entry in body.entries:
        if entry.model is not None:
            state.keys.usage.count_model(
                entry.organization,
                entry.subject,
                entry.key_id,
                entry.model,
                entry.requests,
                entry.prompt_tokens,
                entry.completion_tokens,
            )
            continue
        state.keys.usage.count_requests(
            entry.organization, entry.subject, entry.key_id, entry.requests
        )
        state.keys.usage.count_denial(
            entry.organization, entry.subject, entry.key_id, entry.denials
        )
    try:
        await state.keys.usage.flush()
    except Exception:  # counted: the next flush writes them (a 5xx would be sent again)
        log.exception("usage report kept for the next flush")
    return JSONResponse({"recorded": len(body.entries)}, status_code=202)
