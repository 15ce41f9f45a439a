"""Ingest with the local model through the API, against the model alone, in one run.

    uv run python scripts/bench_ingest.py                 # 10,000 texts, then 2,000 more
    uv run python scripts/bench_ingest.py --texts 2000 --more 1000

Texts: real English passages of about 70 words from Python's own documentation and the
docstrings of installed packages (``scripts/corpus.py``), in a fixed order.

1. **Baseline**: a plain onnxruntime loop over the same model file and the same texts, in
   batches of 32 in arrival order, padded to each batch's longest, default session options
   (onnxruntime's default threads), mean pooling: what the model itself does.
2. **API**: the memory service (``python -m memory_service serve``, local model, SQLite) as
   its own process on a loopback port; the texts go over real HTTP in batches of 256 from
   ``--clients`` concurrent clients, each request carrying a signed identity assertion as
   the gateway would send. The rate is texts stored per second; the ratio is API / baseline.
3. **Resident size** of the service process after each quarter of ``--texts`` and again
   after ``--more`` further texts (flat means the last is within 10% of the one before),
   once every ``--sample-every`` seconds throughout (with the peak, VmHWM), and
   ``--settle`` minutes after the last store (the service idle), so a slow leak shows.
   ``--no-baseline`` skips step 1 for a footprint-only run.
4. **Search p99**: hybrid searches (the service embeds the query) one after another, first
   with the service idle, then while the ``--more`` texts are being imported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from corpus import passages

from hanzo_contract.assertion import MEMORY_AUDIENCE, AssertionSigner, generate_keypair
from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from memory_service.embeddings.local import MAX_TOKENS, model_files

API_BATCH = 256
STORE, SEARCH = "/v1/memory/store", "/v1/memory/search"
BASELINE_BATCH = 32


def baseline(texts: list[str]) -> float:
    """Texts per second of a plain onnxruntime loop: batches of 32, arrival order."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    model_path, tokenizer_path = model_files()
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(tokenizer_path))
    tokenizer.enable_truncation(MAX_TOKENS)
    tokenizer.enable_padding()
    started = time.perf_counter()
    for start in range(0, len(texts), BASELINE_BATCH):
        enc = tokenizer.encode_batch(texts[start : start + BASELINE_BATCH])
        ids = np.array([e.ids for e in enc], dtype=np.int64)
        mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
        hidden = session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        _ = pooled / np.linalg.norm(pooled, axis=1, keepdims=True)
    return len(texts) / (time.perf_counter() - started)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/<pid>/status in MB: VmRSS now, VmHWM the peak so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field}")


async def sample_rss(pid: int, every: float, started: float) -> None:
    """Print the service's resident size every ``every`` seconds until cancelled: a run of
    10,000 texts takes most of an hour on a loaded machine, and a leak shows as a slope."""
    while True:
        await asyncio.sleep(every)
        elapsed, load = time.monotonic() - started, os.getloadavg()[0]
        print(f"  t={elapsed:.0f}s: service RSS {rss_mb(pid):.0f} MB "
              f"(peak {rss_mb(pid, 'VmHWM'):.0f}), load {load:.1f}", flush=True)  # fmt: skip


class Service:
    """The memory service in its own process, on a loopback port, with the local model."""

    def __init__(self, root: Path) -> None:
        private, public = generate_keypair()
        (root / "assertion.pub").write_bytes(public)
        self.signer = AssertionSigner(private, ttl_seconds=600)
        self.port = free_port()
        (root / "hanzo.toml").write_text("")  # no operator config: env only
        env = {
            **os.environ,
            "HANZO_STATE_DIR": str(root),
            "HANZO_CONFIG": str(root / "hanzo.toml"),
            "HANZO_MEMORY_BACKEND": "sqlite",
            "HANZO_MEMORY_EMBEDDER": "local",
            "HANZO_MEMORY_DATA_DIR": str(root / "memory"),
            "HANZO_MEMORY_ASSERTION_PUBLIC_KEY": str(root / "assertion.pub"),
        }
        cmd = [sys.executable, "-m", "memory_service", "serve", "--port", str(self.port)]
        self.proc = subprocess.Popen(cmd, env=env)
        self.url = f"http://127.0.0.1:{self.port}"
        self.principal = Principal(
            organization="bench",
            subject="bench/alice",
            scopes=frozenset({"memory:read", "memory:write"}),
        )

    def headers(self, path: str) -> dict[str, str]:
        """An assertion for one POST to ``path``, bound to it as the gateway binds it."""
        token = self.signer.sign(self.principal, audience=MEMORY_AUDIENCE, method="POST", path=path)
        return {ASSERTION: token}

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("memory service exited")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
        raise RuntimeError("memory service did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def store_all(
    svc: Service, client: httpx.AsyncClient, texts: list[str], clients: int
) -> float:
    """Texts per second stored through the API, ``clients`` requests in flight."""
    batches = [texts[i : i + API_BATCH] for i in range(0, len(texts), API_BATCH)]
    queue = list(reversed(batches))

    async def worker() -> None:
        while queue:
            batch = queue.pop()
            body = {"memories": [{"content": t} for t in batch]}
            r = await client.post(STORE, json=body, headers=svc.headers(STORE))
            r.raise_for_status()
            results = r.json()["results"]
            assert all(x["status"] == "created" for x in results), results[:3]

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(texts) / (time.perf_counter() - started)


async def searches(
    svc: Service, client: httpx.AsyncClient, queries: list[str], until: asyncio.Event | None
) -> list[float]:
    """Latencies (ms) of hybrid searches one after another, over ``queries`` once, or
    round and round until ``until`` is set."""
    out: list[float] = []
    i = 0
    while True:
        if until is None and i >= len(queries):
            return out
        if until is not None and until.is_set():
            return out
        body = {"query": queries[i % len(queries)], "mode": "hybrid", "top_k": 10}
        started = time.perf_counter()
        r = await client.post(SEARCH, json=body, headers=svc.headers(SEARCH))
        out.append((time.perf_counter() - started) * 1000)
        r.raise_for_status()
        i += 1


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def api_run(
    texts: list[str],
    more: list[str],
    queries: list[str],
    clients: int,
    sample_every: float,
    settle: list[float],
) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        svc = Service(Path(tmp))
        sampler: asyncio.Task[None] | None = None
        try:
            async with httpx.AsyncClient(base_url=svc.url, timeout=600) as client:
                await svc.wait_ready(client)
                rss_start = rss_mb(svc.proc.pid)
                sampler = asyncio.create_task(
                    sample_rss(svc.proc.pid, sample_every, time.monotonic())
                )
                # four quarters, resident size after each; the rate is over all of them
                rss_steps: list[tuple[int, float]] = []
                elapsed = 0.0
                for quarter in range(4):
                    part = texts[quarter * len(texts) // 4 : (quarter + 1) * len(texts) // 4]
                    elapsed += len(part) / await store_all(svc, client, part, clients)
                    rss_steps.append(((quarter + 1) * len(texts) // 4, rss_mb(svc.proc.pid)))
                    print(f"  stored {rss_steps[-1][0]}: service RSS {rss_steps[-1][1]:.0f} MB, "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
                rate = len(texts) / elapsed
                rss_after = rss_steps[-1][1]
                idle = await searches(svc, client, queries, None)
                done = asyncio.Event()

                async def import_more() -> float:
                    try:
                        return await store_all(svc, client, more, clients)
                    finally:
                        done.set()

                more_rate, busy = await asyncio.gather(
                    import_more(), searches(svc, client, queries, done)
                )
                rss_more = rss_mb(svc.proc.pid)
                print(f"  stored {len(texts) + len(more)}: service RSS {rss_more:.0f} MB",
                      flush=True)  # fmt: skip
                last_store = time.monotonic()
                rss_settle: list[tuple[float, float]] = []
                for minutes in settle:
                    await asyncio.sleep(max(0.0, last_store + 60 * minutes - time.monotonic()))
                    rss_settle.append((minutes, rss_mb(svc.proc.pid)))
                    print(f"  {minutes:g} min after the last store: service RSS "
                          f"{rss_settle[-1][1]:.0f} MB", flush=True)  # fmt: skip
                rss_peak = rss_mb(svc.proc.pid, "VmHWM")
        finally:
            if sampler is not None:
                sampler.cancel()
            svc.stop()
    return {
        "rate": rate,
        "more_rate": more_rate,
        "rss_start": rss_start,
        "rss_steps": rss_steps,
        "rss_after": rss_after,
        "rss_more": rss_more,
        "rss_settle": rss_settle,
        "rss_peak": rss_peak,
        "idle": idle,
        "busy": busy,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--more", type=int, default=2_000)
    parser.add_argument("--clients", type=int, default=2, help="concurrent store requests")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the onnxruntime loop (a footprint-only run)")  # fmt: skip
    parser.add_argument("--sample-every", type=float, default=60.0,
                        help="seconds between resident-size samples during the run")  # fmt: skip
    parser.add_argument("--settle", default="1,3",
                        help="minutes after the last store to sample RSS again")  # fmt: skip
    args = parser.parse_args()

    corpus = passages(args.texts + args.more)
    if len(corpus) < args.texts + args.more:
        raise SystemExit(f"the corpus has only {len(corpus)} passages")
    texts, more = corpus[: args.texts], corpus[args.texts :]
    # queries: the first sentence of passages spread over the stored ones
    step = max(1, len(texts) // args.queries)
    queries = [t.split(". ")[0][:200] for t in texts[::step][: args.queries]]
    print(f"load before: {os.getloadavg()[0]:.2f} (uptime 1-min), cpus {os.cpu_count()}")
    print(f"texts: {len(texts)} + {len(more)}, "
          f"{statistics.mean(len(t.split()) for t in corpus):.0f} words on average")  # fmt: skip

    if args.no_baseline:
        base = float("nan")
        print("baseline skipped (--no-baseline): no ingest ratio this run")
    else:
        base = baseline(texts)
        print(f"baseline onnxruntime loop (batch {BASELINE_BATCH}, arrival order): "
              f"{base:.1f} texts/s")  # fmt: skip
    settle = [float(m) for m in args.settle.split(",") if m.strip()]
    res = asyncio.run(api_run(texts, more, queries, args.clients, args.sample_every, settle))
    rate = res["rate"]
    print(f"API store (HTTP, batches of {API_BATCH}, {args.clients} clients): "
          f"{rate:.1f} texts/s   ratio {rate / base:.2f}x (target >= 1.0x)")  # fmt: skip
    print(f"API store of the further {len(more)} during searches: {res['more_rate']:.1f} texts/s")
    flat = res["rss_more"] <= 1.1 * res["rss_after"]
    steps = ", ".join(f"after {n} {mb:.0f} MB" for n, mb in res["rss_steps"])
    print(f"service RSS: start {res['rss_start']:.0f} MB, {steps}, "
          f"after {len(texts) + len(more)} {res['rss_more']:.0f} MB "
          f"({'flat' if flat else 'GROWING'}; target <= 1024 MB)")  # fmt: skip
    settled = ", ".join(f"{m:g} min after {mb:.0f} MB" for m, mb in res["rss_settle"])
    print(f"service RSS after the last store: {settled or 'not sampled'}; "
          f"peak (VmHWM) {res['rss_peak']:.0f} MB")  # fmt: skip
    idle99, busy99 = pct(res["idle"], 99), pct(res["busy"], 99)
    print(f"hybrid search p50/p99 idle: {pct(res['idle'], 50):.1f} / {idle99:.1f} ms "
          f"({len(res['idle'])}); during import: {pct(res['busy'], 50):.1f} / {busy99:.1f} ms "
          f"({len(res['busy'])}); ratio p99 {busy99 / idle99:.2f}x (target <= 3x)")  # fmt: skip
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
