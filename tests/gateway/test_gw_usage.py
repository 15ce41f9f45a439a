"""Usage reports: counted on the hot path, kept across a delivery that never reached a
sidecar (``Unavailable``: no connection, or a 5xx), never sent twice when one was sent
and its answer lost (the served case: ``test_gw_sidecar_failover.py``)."""

from __future__ import annotations

from typing import Any

from gateway_plugins.errors import Unavailable
from gateway_plugins.usage import UsageReporter
from hanzo_contract.principal import Principal

ALICE = Principal(organization="acme", subject="acme/alice", key_id="k1")
BOB = Principal(organization="acme", subject="acme/bob")


async def test_counts_survive_a_failed_report_and_go_out_with_the_next() -> None:
    sent: list[list[dict[str, Any]]] = []
    fail = [True]

    async def send(entries: list[dict[str, Any]]) -> None:
        if fail[0]:
            raise Unavailable("no sidecar answered")
        sent.append(entries)

    usage = UsageReporter(send, interval=3600)
    for _ in range(3):
        usage.count(ALICE)
    usage.count(BOB)
    await usage.flush()  # fails: nothing lost
    assert sent == []
    usage.count(ALICE)
    fail[0] = False
    await usage.flush()
    got = {(e["subject"], e["key_id"]): e["requests"] for e in sent[0]}
    assert got == {("acme/alice", "k1"): 4, ("acme/bob", None): 1}
    await usage.flush()  # nothing new: nothing sent
    assert len(sent) == 1
    await usage.aclose()


async def test_a_long_outage_keeps_at_most_max_entries_callers() -> None:
    async def send(entries: list[dict[str, Any]]) -> None:
        raise Unavailable("no sidecar answered")

    usage = UsageReporter(send, interval=3600, max_entries=2)
    for i in range(5):
        usage.count(Principal(organization="acme", subject=f"acme/u{i}"))
    await usage.flush()
    assert len(usage._counts) == 2
    await usage.aclose()
