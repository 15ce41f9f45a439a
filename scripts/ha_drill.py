"""High-availability drill, one command: ``uv run python scripts/ha_drill.py [--short]``.

Starts ``hanzo up --profile production`` in a temp state dir (PostgreSQL, a Valkey
cluster, two plugin processes, two sidecars and two memory replicas behind nginx), drives
a mixed load through nginx from a few concurrent clients, and kills one of each pair in
turn with SIGKILL: ``gateway_b``, ``sidecar_b``, then ``sidecar`` (the one both plugins ask
first: they must verify keys at ``sidecar_b`` meanwhile), then ``memory_b``. The killed
part is held down for its window (the supervisor does not restart it), then released;
the supervisor starts it again and the drill waits until it answers before the next kill.

The load, each request judged as it is answered:

- a writer key (memory:read, memory:write) stores, searches and gets its memories back;
- a reader key (memory:read) writes: it must be refused (403);
- a revoked key searches: it must be refused (401);
- the key API's public document (``/v1/openapi/keys.json``), served by the sidecars.

Per kill it prints: requests in the window (from the kill to the killed part answering
again plus a settle time), failed requests (a request normal operation serves that was not
served: a 5xx or a transport error), the failure window (ms from the kill to the end of the
last failed request; 0 when none failed), wrong decisions (a 2xx for a refused key, a 401
or 403 for a good one) and acknowledged writes lost (every store answered 2xx in the window
is read back at the end through nginx), and for a sidecar the key checks both plugins
passed from it to the other one (their ``hanzo_gateway_sidecar_failovers_total``). What
must hold: 0 wrong decisions and 0 writes lost for every kill; failures are what nginx
could not move to the other process (a request already sent to the killed one is never
re-sent: POSTs are not idempotent).

Bounded: ``--requests`` caps the load, ``--time-cap`` the drill (the stack's start not
counted); both stop it by itself. Loopback only, ports chosen at run time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
from fault_suite import run_to_exit, suite_tenant_file

from hanzo_stack.process import LOOPBACK, http_ok
from hanzo_stack.servers import EchoUpstream
from hanzo_stack.stack import Stack, StackInfo

#: one of each pair, killed in this order
KILLED = ("gateway_b", "sidecar_b", "sidecar", "memory_b")
#: the plugin processes, whose ``/metrics`` count the calls passed over a dead sidecar
PLUGINS = ("gateway", "gateway_b")
KINDS = ("store", "search", "get", "reader_store", "revoked", "keys_doc")
#: requests per second per client: a steady load on a shared machine, not a flood
CLIENT_RATE = 8.0


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    status: int  # 0: a transport error
    failed: bool = False
    wrong: bool = False


@dataclass
class Keys:
    writer: str
    reader: str
    revoked: str


@dataclass
class Load:
    """The mixed load: ``clients`` concurrent loops, stopped by :attr:`stop` or the cap."""

    gateway: str
    keys: Keys
    clients: int
    cap: int
    outcomes: list[Outcome] = field(default_factory=list)
    acked: list[tuple[float, str, str]] = field(default_factory=list)  # when, id, content
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.gateway, timeout=10.0) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(self.clients)))

    async def _client(self, client: httpx.AsyncClient, n: int) -> None:
        turn = n
        while not self.stop.is_set() and len(self.outcomes) < self.cap:
            await self._one(client, KINDS[turn % len(KINDS)], turn)
            turn += 1
            await asyncio.sleep(1.0 / CLIENT_RATE)

    async def _one(self, client: httpx.AsyncClient, kind: str, turn: int) -> None:
        writer = {"Authorization": f"Bearer {self.keys.writer}"}
        started = time.monotonic()
        content = f"ha drill {self.run_id} item {turn}-{uuid.uuid4().hex[:6]}"
        try:
            if kind == "store":
                reply = await client.post(
                    "/v1/memory/store", json={"memories": [{"content": content}]}, headers=writer
                )
                if reply.is_success:
                    self.acked.append((started, reply.json()["ids"][0], content))
            elif kind == "search":
                reply = await client.post(
                    "/v1/memory/search",
                    json={"query": f"ha drill {self.run_id}", "mode": "keyword"},
                    headers=writer,
                )
            elif kind == "get":
                if not self.acked:
                    return
                memory_id = self.acked[turn % len(self.acked)][1]
                reply = await client.get(
                    "/v1/memory/retrieve", params={"id": memory_id}, headers=writer
                )
            elif kind == "reader_store":
                reply = await client.post(
                    "/v1/memory/store",
                    json={"memories": [{"content": "a reader may not write this"}]},
                    headers={"Authorization": f"Bearer {self.keys.reader}"},
                )
            elif kind == "revoked":
                reply = await client.post(
                    "/v1/memory/search",
                    json={"query": "anything"},
                    headers={"Authorization": f"Bearer {self.keys.revoked}"},
                )
            else:
                reply = await client.get("/v1/openapi/keys.json")
            status = reply.status_code
        except httpx.HTTPError:
            status = 0
        self.outcomes.append(Outcome(kind, started, time.monotonic(), status))
        judge(self.outcomes[-1])


def judge(o: Outcome) -> None:
    """A refused key answered 2xx, or a good one 401/403: a wrong decision. A 5xx (or no
    answer) for a request normal operation serves: a failure. A refused key's 5xx is a
    failure too (no decision was made), never a wrong one."""
    must_refuse = {"reader_store": 403, "revoked": 401}.get(o.kind)
    if must_refuse is not None:
        o.wrong = 200 <= o.status < 300
        o.failed = not o.wrong and o.status != must_refuse
    else:
        o.wrong = o.status in (401, 403)
        o.failed = not (200 <= o.status < 300) and not o.wrong


@dataclass
class KillReport:
    part: str
    requests: int
    failed: int
    failure_window_ms: float
    wrong_decisions: int
    acked_writes: int
    writes_lost: int = 0
    restart_s: float = 0.0
    #: key checks the plugins passed from the killed sidecar to the other one
    sidecar_failovers: int = 0
    failures: list[str] = field(default_factory=list)


async def kill_one(
    stack: Stack, info: StackInfo, load: Load, part: str, down: float, settle: float
) -> tuple[KillReport, float, float]:
    """Hold ``part`` down, SIGKILL it, keep the load on for ``down`` s, release it, wait
    until it answers, then ``settle`` s more; the window's outcomes judged."""
    url = f"http://{LOOPBACK}:{info.ports[part]}/healthz"
    if not await asyncio.to_thread(http_ok, url):
        raise RuntimeError(f"{part} was not serving before its kill")
    stack.hold(part)
    start = time.monotonic()
    await asyncio.to_thread(stack.kill_part, part)
    await asyncio.sleep(min(1.0, down))
    if await asyncio.to_thread(http_ok, url):  # held down: the other one serves alone
        raise RuntimeError(f"{part} answers although it was killed and held down")
    await asyncio.sleep(down - min(1.0, down))
    released = time.monotonic()
    await asyncio.to_thread(stack.release, part)
    while not await asyncio.to_thread(http_ok, url):
        if time.monotonic() - released > 120:
            raise RuntimeError(f"{part} did not come back within 120 s")
        await asyncio.sleep(0.2)
    restart = time.monotonic() - released
    await asyncio.sleep(settle)
    end = time.monotonic()
    passed_over = await asyncio.to_thread(sidecar_failovers, info, part)
    window = [o for o in load.outcomes if start <= o.started < end]
    failed = [o for o in window if o.failed]
    report = KillReport(
        part=part,
        requests=len(window),
        failed=len(failed),
        failure_window_ms=round(max((o.ended - start for o in failed), default=0.0) * 1000),
        wrong_decisions=sum(o.wrong for o in window),
        acked_writes=sum(start <= t < end for t, _, _ in load.acked),
        restart_s=round(restart, 2),
        sidecar_failovers=passed_over,
        failures=[f"{o.kind}:{o.status}" for o in failed],
    )
    return report, start, end


def sidecar_failovers(info: StackInfo, sidecar: str) -> int:
    """Calls both plugins passed over ``sidecar`` so far (their ``/metrics``); 0 for a
    part that is not a sidecar."""
    url = f"http://{LOOPBACK}:{info.ports[sidecar]}"
    total = 0.0
    for plugin in PLUGINS:
        scraped = httpx.get(f"http://{LOOPBACK}:{info.ports[plugin]}/metrics", timeout=5).text
        for line in scraped.splitlines():
            if line.startswith(f'hanzo_gateway_sidecar_failovers_total{{sidecar="{url}"}}'):
                total += float(line.rsplit(" ", 1)[1])
    return int(total)


async def read_back(gateway: str, keys: Keys, acked: list[tuple[float, str, str]]) -> set[str]:
    """The ids of acknowledged writes that are not there (or not as written)."""
    lost: set[str] = set()
    async with httpx.AsyncClient(
        base_url=gateway, timeout=15, headers={"Authorization": f"Bearer {keys.writer}"}
    ) as client:
        for _, memory_id, content in acked:
            reply = await client.get("/v1/memory/retrieve", params={"id": memory_id})
            found = reply.json().get("memories", []) if reply.status_code == 200 else []
            if not found or found[0]["content"] != content:
                lost.add(memory_id)
    return lost


def mint(stack: Stack, info: StackInfo, owner: str, scopes: list[str]) -> tuple[str, str]:
    """A key for ``owner`` in acme from the sidecar's CLI: (key, key id). Never printed."""
    args = ["keys", "create", "--org", "acme", "--owner", owner, "--json"]
    args += ["--name", f"ha-{uuid.uuid4().hex[:6]}"]
    for scope in scopes:
        args += ["--scope", scope]
    created = json.loads(stack.sidecar_cli(Path(info.tenant_file), *args))
    return str(created["key"]), str(created["record"]["key_id"])


async def drill(args: argparse.Namespace, state: Path, say: Callable[[str], None]) -> dict:
    echo = EchoUpstream(state).start()  # stands in for the inference gateway
    stack = Stack(state / "stack", progress=say, profile="production")
    assert stack.production is not None
    try:
        say("starting the production stack ...")
        info = await asyncio.to_thread(
            stack.up,
            suite_tenant_file(state),
            ui=False,
            inference_upstream=f"{LOOPBACK}:{echo.port}",
        )
        writer, _ = mint(stack, info, "alice", ["memory:read", "memory:write"])
        reader, _ = mint(stack, info, "bob", ["memory:read"])
        revoked, revoked_id = mint(stack, info, "alice", ["memory:read"])
        stack.sidecar_cli(Path(info.tenant_file), "keys", "revoke", "--org", "acme", revoked_id)
        load = Load(info.gateway_url, Keys(writer, reader, revoked), args.clients, args.requests)
        runner = asyncio.create_task(load.run())
        deadline = time.monotonic() + args.time_cap
        kills: list[KillReport] = []
        windows: list[tuple[float, float]] = []
        try:
            await asyncio.sleep(args.warm)
            for part in args.parts:
                if time.monotonic() > deadline or runner.done():
                    say(f"cap reached before killing {part}")
                    break
                say(f"SIGKILL {part}, held down {args.down:.0f} s ...")
                report, start, end = await kill_one(stack, info, load, part, args.down, args.settle)
                kills.append(report)
                windows.append((start, end))
        finally:
            load.stop.set()
            await runner
        lost = await read_back(info.gateway_url, load.keys, load.acked)
        for report, (start, end) in zip(kills, windows, strict=True):
            report.writes_lost = sum(
                start <= t < end and memory_id in lost for t, memory_id, _ in load.acked
            )
        status = stack.report()
        return {
            "kills": [asdict(k) for k in kills],
            "requests": len(load.outcomes),
            "failed": sum(o.failed for o in load.outcomes),
            "wrong_decisions": sum(o.wrong for o in load.outcomes),
            "acknowledged_writes": len(load.acked),
            "acknowledged_writes_lost": len(lost),
            "clients": args.clients,
            "healthy_after": status["healthy"],
        }
    finally:
        await asyncio.to_thread(stack.down, True)
        echo.stop()
        pgdata = stack.production.postgres.pgdata.parent
        if pgdata != state / "stack" / "postgres":  # as root: under /var/lib/hanzo-pg/
            shutil.rmtree(pgdata, ignore_errors=True)


def print_table(results: dict) -> None:
    print(
        "| part killed | requests in window | failed | failure window | wrong decisions "
        "| acked writes | writes lost | back after | plugin failovers |"
    )
    print("|---" * 9 + "|")
    for k in results["kills"]:
        print(
            f"| {k['part']} | {k['requests']} | {k['failed']} | {k['failure_window_ms']:.0f} ms "
            f"| {k['wrong_decisions']} | {k['acked_writes']} | {k['writes_lost']} "
            f"| {k['restart_s']:.2f} s | {k['sidecar_failovers']} |"
        )
    print(
        f"\nwhole run: {results['requests']} requests from {results['clients']} clients, "
        f"failed {results['failed']}, wrong decisions {results['wrong_decisions']}, "
        f"acknowledged writes {results['acknowledged_writes']}, lost "
        f"{results['acknowledged_writes_lost']}, all parts healthy after: "
        f"{results['healthy_after']}"
    )


def passed(results: dict) -> bool:
    return (
        results["wrong_decisions"] == 0
        and results["acknowledged_writes_lost"] == 0
        and [k["part"] for k in results["kills"]] == list(KILLED)
        and all(k["wrong_decisions"] == 0 and k["writes_lost"] == 0 for k in results["kills"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="the CI version: short windows")
    parser.add_argument("--parts", nargs="*", default=list(KILLED), choices=KILLED)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--requests", type=int, default=4000, help="cap on the load's requests")
    parser.add_argument("--time-cap", type=float, default=300.0, help="cap on the drill, s")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.warm, args.down, args.settle = (2.0, 3.0, 2.0) if args.short else (4.0, 10.0, 4.0)
    if args.short:
        args.clients, args.requests = min(args.clients, 3), min(args.requests, 1500)
    say = (lambda _: None) if args.quiet else (lambda line: print(line, flush=True))
    run_to_exit("hanzo-ha-", lambda tmp: drill(args, tmp, say), args.json, print_table, passed)


if __name__ == "__main__":
    main()
