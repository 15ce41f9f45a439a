"""``gateway_plugins.eager``: a coroutine run in place until it first waits, its rest
finished by any task as if awaited from the start; and the waits a decision may meet in
place start their own tasks (a shared sidecar fetch outlives a requester that left)."""

from __future__ import annotations

import asyncio

import pytest

from gateway_plugins import eager
from gateway_plugins.core import DecisionCore
from gateway_plugins.request import AuthRequest
from hanzo_contract.principal import Principal
from tests.gateway.conftest import ALICE_KEY, FakeSidecar


async def test_a_coroutine_that_never_waits_is_done_in_place() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert eager.start(add(2, 3)) == (True, 5)


async def test_a_coroutine_that_waits_is_finished_by_the_task_that_awaits_its_rest() -> None:
    order = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work() -> int:
        order.append("began")
        got = await gate
        await asyncio.sleep(0)  # a bare yield, too
        order.append("ended")
        return got * 2

    done, rest = eager.start(work())
    assert not done and order == ["began"]
    assert isinstance(rest, eager.Resumed)
    task = asyncio.ensure_future(_await(rest))
    await asyncio.sleep(0)
    gate.set_result(21)
    assert await task == 42 and order == ["began", "ended"]


async def _await(rest: eager.Resumed[int]) -> int:
    return await rest


async def test_errors_and_cancellation_reach_the_coroutine_where_they_are_raised() -> None:
    async def fails_at_once() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        eager.start(fails_at_once())

    cleaned = []

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    done, rest = eager.start(waits_forever())
    assert not done
    task = asyncio.ensure_future(_await(rest))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]


class SlowSidecar(FakeSidecar):
    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def verify(self, key: str):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        return await super().verify(key)


async def test_a_shared_key_lookup_outlives_the_requester_that_started_it(
    core: DecisionCore, alice: Principal
) -> None:
    """Two requests miss the cache for one key and share one sidecar call; the first is
    cancelled (its client went away): the second still gets its answer, from that call."""
    slow = SlowSidecar()
    slow.keys[ALICE_KEY] = alice
    core._keys = slow  # type: ignore[assignment]
    request = AuthRequest("GET", "/v1/memory/retrieve", {"authorization": f"Bearer {ALICE_KEY}"})
    first = asyncio.ensure_future(core.decide(request))
    second = asyncio.ensure_future(core.decide(request))
    await asyncio.sleep(0.01)
    first.cancel()
    await asyncio.sleep(0.01)
    slow.gate.set()
    decision = await second
    assert decision.status == 200 and decision.principal == alice
    assert slow.calls == 1 and first.cancelled()
