"""Anonymous denials cost one audit row per (source, status, reason, minute), however many
arrive; every authenticated denial keeps its own row. The clock is driven, never waited."""

from __future__ import annotations

from pathlib import Path

from iam_sidecar.records.denials import ANONYMOUS_DENIED, DenialAggregator
from tests.sidecar.helpers import ManualClock, bearer, make_settings, running_app

MINUTE = 60.0


def _report(source: str, subject: str | None = None, status: int = 401) -> dict[str, object]:
    report: dict[str, object] = {
        "status": status,
        "reason": "missing credential" if subject is None else "missing scope memory:write",
        "method": "GET",
        "path": "/v1/memory/retrieve",
        "client_ip": source,
    }
    if subject is not None:
        report |= {"subject": subject, "organization": "acme"}
    return report


async def test_anonymous_denials_aggregate_per_source_reason_and_minute(tmp_path: Path) -> None:
    clock = ManualClock(start=6_000_020.0)  # 20 s into a minute
    settings = make_settings(tmp_path)
    async with running_app(settings, run_reconcile=False, clock=clock) as (_, state, client):
        headers = bearer(settings)

        async def send(report: dict[str, object], times: int) -> None:
            for _ in range(times):
                response = await client.post("/v1/audit/denials", json=report, headers=headers)
                assert response.status_code == 202, response.text

        await send(_report("203.0.113.7"), 150)
        await send(_report("203.0.113.8"), 40)
        await send(_report("203.0.113.8", status=403), 5)
        await send(_report("203.0.113.9", subject="acme/bob"), 7)
        # still the same minute: nothing anonymous written yet, every authenticated row is
        assert await state.keys.audit.query(action=ANONYMOUS_DENIED) == []
        assert len(await state.keys.audit.query(action="request.denied")) == 7

        clock.advance(MINUTE)  # the minute is over; the next denial carries the old counts
        await send(_report("203.0.113.7"), 3)
        rows = await state.keys.audit.query(action=ANONYMOUS_DENIED)
        counts = {(row.source, row.outcome): row.details["count"] for row in rows}  # type: ignore[index]
        assert counts == {
            ("203.0.113.7", "401:missing credential"): 150,
            ("203.0.113.8", "401:missing credential"): 40,
            ("203.0.113.8", "403:missing credential"): 5,
        }
        assert all(row.actor == "anonymous" for row in rows)
        assert {row.details["minute_start"] for row in rows} == {6_000_000.0}  # type: ignore[index]
    # shutdown writes the open minute: the 3 denials of the second minute are not lost
    async with running_app(settings, run_reconcile=False, clock=clock) as (_, state, _client):
        rows = await state.keys.audit.query(action=ANONYMOUS_DENIED)
        assert sum(row.details["count"] for row in rows) == 198  # type: ignore[index]
        assert len(rows) == 4


def test_open_buckets_are_bounded() -> None:
    clock = ManualClock(start=0.0)
    aggregator = DenialAggregator(clock, max_buckets=10)
    for n in range(1_000):
        aggregator.add(f"198.51.100.{n % 250}-{n}", 401, "missing credential")
    assert len(aggregator) == 11  # ten sources, then one overflow bucket
    clock.advance(MINUTE)
    closed = dict(aggregator.closed())
    assert sum(closed.values()) == 1_000
    assert max(closed.values()) == 990 and len(aggregator) == 0
