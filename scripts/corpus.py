"""Real English text nobody on this project wrote, from what ships with Python itself.

Two sources, both in every CPython install, read in a fixed order so runs are comparable:

- ``pydoc_data.topics``: the language reference and library chapters ``help()`` shows,
  split into paragraphs;
- the docstrings of the standard library's modules, classes and functions, then of the
  third-party packages installed in the environment (read with :mod:`ast` from their source
  files, nothing imported or executed; this project's own packages are skipped).

:func:`passages` gives paragraphs of about 70 words (long ones cut at sentence ends,
short neighbours joined), unique, in a stable order. :func:`titled` gives
``(title, body)`` pairs for the retrieval-quality benchmark: a docstring's first sentence
(its summary line) and the rest of it, which is what a person searching for that function
would type and what they want to find.
"""

from __future__ import annotations

import ast
import pydoc_data.topics
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path

_WORDS = 70
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def _clean(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _english(text: str) -> bool:
    """Prose rather than code or tables: mostly alphabetic words."""
    words = text.split()
    return len(words) >= 8 and sum(w.isalpha() for w in words) >= 0.6 * len(words)


_SKIP = {"test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3"}


def _sources() -> Iterator[tuple[Path, Path]]:
    """``(root, file)`` for the stdlib's sources, then the installed packages' (sorted)."""
    paths = sysconfig.get_paths()
    for key in ("stdlib", "purelib"):
        root = Path(paths[key])
        for path in sorted(root.rglob("*.py")):
            if not _SKIP.intersection(path.relative_to(root).parts[:-1]):
                yield root, path


def docstrings() -> Iterator[tuple[str, str]]:
    """``(qualified name, docstring)`` of modules, classes and functions: the standard
    library's, then the third-party packages installed beside it (none of them ours)."""
    own = {"memory_service", "iam_sidecar", "gateway_plugins", "hanzo_contract", "hanzo_stack",
           "hanzo_client", "scripts", "tests"}  # fmt: skip
    for root, path in _sources():
        if path.relative_to(root).parts[0] in own:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(path.relative_to(root).with_suffix("").parts)

        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc:
                    name = module if isinstance(node, ast.Module) else f"{module}.{node.name}"
                    yield name, doc


def _paragraphs() -> Iterator[str]:
    for key in sorted(pydoc_data.topics.topics):
        yield from pydoc_data.topics.topics[key].split("\n\n")
    for _, doc in docstrings():
        yield from doc.split("\n\n")


def _sized(paragraphs: Iterator[str]) -> Iterator[str]:
    """Paragraphs cut or joined to about ``_WORDS`` words at sentence boundaries."""
    pending: list[str] = []
    for para in paragraphs:
        text = _clean(para)
        if not _english(text):
            continue
        for sentence in _SENTENCE.split(text):
            pending.append(sentence)
            if sum(len(s.split()) for s in pending) >= _WORDS:
                yield " ".join(pending)
                pending = []
    if pending:
        yield " ".join(pending)


def passages(limit: int | None = None) -> list[str]:
    """Unique English passages of about 70 words, in a fixed order."""
    seen: set[str] = set()
    out: list[str] = []
    for text in _sized(_paragraphs()):
        if text not in seen:
            seen.add(text)
            out.append(text)
            if limit is not None and len(out) >= limit:
                break
    return out


def titled(limit: int | None = None) -> list[tuple[str, str]]:
    """``(summary line, rest of the docstring)`` for docstrings with enough of both."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for _, doc in docstrings():
        first, _, rest = doc.partition("\n\n")
        title, body = _clean(first), _clean(rest)
        if len(title.split()) < 5 or not _english(body) or len(body.split()) < 20:
            continue
        if title in seen or body in seen:
            continue
        seen.update((title, body))
        out.append((title, " ".join(body.split()[:120])))
        if limit is not None and len(out) >= limit:
            break
    return out


if __name__ == "__main__":
    texts = passages()
    pairs = titled()
    words = sum(len(t.split()) for t in texts)
    print(f"{len(texts)} passages, {words / len(texts):.0f} words each; {len(pairs)} titled")
    print(texts[0][:300])
    print(pairs[0])
