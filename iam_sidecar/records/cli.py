"""``hanzo audit [usage]``: query the append-only audit log and the usage counters."""

from __future__ import annotations

import time

import typer

from iam_sidecar.console import (
    JsonOpt,
    OrgOpt,
    emit_json,
    emit_table,
    parse_duration,
    run_with_key_store,
    when,
)

audit_cli = typer.Typer(help="Query the audit log and usage counters.")


@audit_cli.callback(invoke_without_command=True)
def audit_query(
    ctx: typer.Context,
    org: str | None = typer.Option(None, "--org", "-o"),
    action: str | None = typer.Option(None, help="e.g. key.create, request.denied, sync.apply"),
    actor: str | None = typer.Option(None),
    outcome: str | None = typer.Option(None),
    since: str | None = typer.Option(None, help="Only events newer than this, like 1h, 7d."),
    limit: int = typer.Option(50, min=1, max=10_000),
    json_out: bool = JsonOpt,
) -> None:
    """Query the append-only audit log, newest first."""
    if ctx.invoked_subcommand is not None:
        return
    since_ts = time.time() - parse_duration(since) if since else None
    events = run_with_key_store(
        lambda s: s.audit.query(
            organization=org,
            action=action,
            actor=actor,
            outcome=outcome,
            since=since_ts,
            limit=limit,
        )
    )
    if json_out:
        emit_json([e.model_dump() for e in events])
        return
    emit_table(
        "audit log",
        ["when", "actor", "action", "org", "target", "from", "outcome"],
        [
            [when(e.ts), e.actor, e.action, e.organization, e.target, e.source, e.outcome]
            for e in events
        ],
    )


@audit_cli.command("usage")
def audit_usage(
    org: str = OrgOpt,
    day: str | None = typer.Option(None, help="UTC day YYYY-MM-DD (default: all)."),
    level: str | None = typer.Option(None, help="org, user or key"),
    json_out: bool = JsonOpt,
) -> None:
    """Usage per key, user and organization per day: reported requests and denials, and
    the sidecar's own key verifications."""
    rows = run_with_key_store(lambda s: s.usage.query(org, day=day, level=level))
    if json_out:
        emit_json([r.model_dump() for r in rows])
        return
    emit_table(
        f"usage of {org}",
        ["day", "level", "subject", "requests", "denials", "verifications"],
        [[r.day, r.level, r.subject, r.requests, r.denials, r.verifications] for r in rows],
    )


@audit_cli.command("models")
def audit_models(
    org: str = OrgOpt,
    day: str | None = typer.Option(None, help="UTC day YYYY-MM-DD (default: all)."),
    level: str | None = typer.Option(None, help="org, user or key"),
    json_out: bool = JsonOpt,
) -> None:
    """Inference usage per model, per key, user and organization per day: calls and the
    prompt and completion tokens the upstream reported."""
    rows = run_with_key_store(lambda s: s.usage.query_models(org, day=day, level=level))
    if json_out:
        emit_json([r.model_dump() for r in rows])
        return
    emit_table(
        f"model usage of {org}",
        ["day", "level", "subject", "model", "requests", "prompt", "completion", "tokens"],
        [
            [r.day, r.level, r.subject, r.model, r.requests, r.prompt_tokens,
             r.completion_tokens, r.tokens]
            for r in rows
        ],
    )  # fmt: skip
