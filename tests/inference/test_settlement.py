"""A call's settlement finishes when its client leaves as the answer ends.

``Metered.settle`` runs inside the relay, which is cancelled when the client disconnects;
a charge cut off there was never made, and its reservation, expiring, was handed back: the
call was free. :class:`HeldCharger` is the test's stand-in for the plugin's charge
endpoint: it holds each charge until the test lets it through, so the cancel lands inside
it for certain.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio

from hanzo_contract.principal import Principal
from inference_gateway.app import Metered
from inference_gateway.charge import TokenCharger
from inference_gateway.estimate import Estimate


class HeldCharger(TokenCharger):
    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "token")
        self.gate, self.entered = asyncio.Event(), asyncio.Event()
        self.charged: list[tuple[Any, ...]] = []

    async def charge(self, *args: Any) -> None:
        self.entered.set()
        await self.gate.wait()
        self.charged.append(args)


async def test_a_settlement_cut_off_by_the_client_leaving_still_charges() -> None:
    charger = HeldCharger()
    alice = Principal(organization="acme", subject="acme/alice", scopes=frozenset())
    metered = Metered(charger, alice, "m", Estimate(10, 20), reservation="r1")
    usage = {"prompt_tokens": 7, "completion_tokens": 5}
    async with anyio.create_task_group() as relay:  # as Starlette runs a streamed answer
        relay.start_soon(metered.settle, usage)
        await charger.entered.wait()
        relay.cancel_scope.cancel()  # the client left: the relay is cancelled mid-charge
        charger.gate.set()
    assert charger.charged == [(alice, "m", 7, 5, "r1")]
    await charger.aclose()
