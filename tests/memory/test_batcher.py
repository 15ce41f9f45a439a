"""Embedding throughput parts: the cross-request coalescer and length-bucketed model runs."""

from __future__ import annotations

import asyncio
import os
import threading

import numpy as np
import pytest

from memory_service.embeddings import make_embedder
from memory_service.embeddings.base import EmbeddingError
from memory_service.embeddings.batcher import Coalescer
from memory_service.embeddings.local import (
    MAX_ROWS,
    TOKEN_BUDGET,
    LocalMiniLM,
    buckets,
    machine_threads,
)
from memory_service.settings import MemorySettings


class Model:
    """A blocking stand-in for the model: row ``i`` is the number in text ``i``; the first
    run can be held until released, so tests decide what queues behind it."""

    def __init__(self, hold_first: bool = False) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        if not hold_first:
            self.release.set()
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        self.started.set()
        self.release.wait(10)
        if any(t.startswith("boom") for t in texts):
            raise RuntimeError("secret-ish internal detail")
        return np.array([[float(t.split("-")[1])] for t in texts], dtype=np.float32)


def ask(tag: str, n: int, start: int = 0) -> list[str]:
    return [f"{tag}-{start + i}" for i in range(n)]


async def held(model: Model, coalescer: Coalescer, first: list[str]) -> asyncio.Task:
    """A task embedding ``first``, once the model is inside its run (and held there)."""
    task = asyncio.create_task(coalescer.embed(first))
    await asyncio.to_thread(model.started.wait, 10)
    return task


async def test_concurrent_requests_share_a_run_and_get_their_own_rows():
    model = Model(hold_first=True)
    coalescer = Coalescer(model, max_texts=256)
    first = await held(model, coalescer, ask("a", 2, 0))
    waiting = [asyncio.create_task(coalescer.embed(ask(t, 3, 10 * k))) for k, t in
               enumerate("bcd", start=1)]  # fmt: skip
    await asyncio.sleep(0.01)
    model.release.set()
    rows = await asyncio.gather(first, *waiting)
    # one run for the first request, one run for the three that queued behind it
    assert [len(c) for c in model.calls] == [2, 9]
    assert coalescer.runs == [2, 9]
    assert rows[0][:, 0].tolist() == [0.0, 1.0]
    for k, got in enumerate(rows[1:], start=1):
        assert got[:, 0].tolist() == [10.0 * k, 10.0 * k + 1, 10.0 * k + 2]


async def test_a_run_is_bounded_and_a_big_request_goes_whole():
    model = Model(hold_first=True)
    coalescer = Coalescer(model, max_texts=4)
    first = await held(model, coalescer, ask("a", 1))
    small = [asyncio.create_task(coalescer.embed(ask("s", 2, 10 * k))) for k in range(3)]
    big = asyncio.create_task(coalescer.embed(ask("b", 9, 100)))
    await asyncio.sleep(0.01)
    model.release.set()
    await asyncio.gather(first, *small, big)
    assert [len(c) for c in model.calls] == [1, 4, 2, 9]  # arrival order, <= 4 unless alone
    assert big.result()[:, 0].tolist() == [float(100 + i) for i in range(9)]


async def test_an_error_in_one_run_fails_only_that_runs_requests():
    model = Model(hold_first=True)
    coalescer = Coalescer(model, max_texts=2)
    first = await held(model, coalescer, ask("a", 1))
    doomed = asyncio.create_task(coalescer.embed(["boom-1", "x-2"]))
    after = asyncio.create_task(coalescer.embed(ask("c", 2, 5)))
    await asyncio.sleep(0.01)
    model.release.set()
    assert (await first)[:, 0].tolist() == [0.0]
    with pytest.raises(EmbeddingError) as caught:
        await doomed
    assert "secret" not in str(caught.value)  # the model's message stays inside
    assert (await after)[:, 0].tolist() == [5.0, 6.0]  # the queue moved on
    assert [len(c) for c in model.calls] == [1, 2, 2]


async def test_a_cancelled_request_does_not_break_the_others():
    model = Model(hold_first=True)
    coalescer = Coalescer(model, max_texts=256)
    first = await held(model, coalescer, ask("a", 1))
    gone = asyncio.create_task(coalescer.embed(ask("g", 2, 50)))
    kept = asyncio.create_task(coalescer.embed(ask("k", 2, 70)))
    await asyncio.sleep(0.01)
    gone.cancel()
    model.release.set()
    await first
    assert (await kept)[:, 0].tolist() == [70.0, 71.0]
    assert model.calls[1] == ["k-70", "k-71"]  # the cancelled texts were never embedded


def test_buckets_cover_every_text_once_within_budget_and_sorted():
    rng = np.random.default_rng(7)
    lengths = rng.integers(3, 257, 1000).tolist()
    runs = buckets(lengths)
    flat = [i for run in runs for i in run]
    assert sorted(flat) == list(range(len(lengths)))
    for run in runs:
        width = max(lengths[i] for i in run)
        assert len(run) <= MAX_ROWS
        assert len(run) == 1 or len(run) * width <= TOKEN_BUDGET
    padded = sum(len(run) * max(lengths[i] for i in run) for run in runs)
    assert padded <= 1.05 * sum(lengths)  # almost no padding
    # in arrival order, batches of 32 pad to each batch's longest: far more waste
    arrival = sum(32 * max(lengths[i : i + 32]) for i in range(0, len(lengths), 32))
    assert arrival > 1.5 * sum(lengths)


@pytest.fixture(scope="module")
def minilm() -> LocalMiniLM:
    return LocalMiniLM()


def test_bucketed_rows_equal_unbucketed_ones(minilm: LocalMiniLM):
    words = "the quick brown fox jumps over the lazy dog while a cat watches".split()  # noqa: SIM905
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i // 7)) for i in range(40)]
    bucketed = minilm.embed_sync(texts)
    alone = np.concatenate([minilm.embed_sync([t]) for t in texts])  # no padding at all
    assert bucketed.shape == (40, 384)
    assert np.abs(bucketed - alone).max() <= 1e-5
    # and one run padded to the longest text, in arrival order, as before bucketing
    padded = minilm._run([e.ids for e in minilm._tokenizer.encode_batch(texts)])
    padded /= np.linalg.norm(padded, axis=1, keepdims=True)
    assert np.abs(bucketed - padded).max() <= 1e-5


async def test_local_model_coalesces_concurrent_requests(minilm: LocalMiniLM):
    texts = [f"memory number {i} about topic {i % 5}" for i in range(32)]
    results = await asyncio.gather(*(minilm.embed(texts[i : i + 8]) for i in range(0, 32, 8)))
    assert minilm.runs[-1] == 32  # four requests, one model run
    alone = minilm.embed_sync(texts)
    assert np.abs(np.concatenate(results) - alone).max() <= 1e-5
    query = await minilm.embed_query(texts[3])
    assert np.abs(query - alone[3]).max() <= 1e-5


def test_threads_default_to_the_cpus_this_process_may_use():
    assert machine_threads() == len(os.sched_getaffinity(0))
    default = LocalMiniLM()
    assert default._session.get_session_options().intra_op_num_threads == machine_threads()
    one = make_embedder(MemorySettings(embedder="local", embedding_threads=1))
    assert isinstance(one, LocalMiniLM)
    options = one._session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert not options.enable_cpu_mem_arena and not options.enable_mem_pattern
