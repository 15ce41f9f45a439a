"""Load a tenant file, keeping line numbers so every error names its line and field.

PyYAML's composed node tree still knows where each value started; we walk it once to map
field paths to lines, then let pydantic parse the plain data.
"""

from __future__ import annotations

from pathlib import Path as FsPath

import yaml
from pydantic import ValidationError

from iam_sidecar.errors import TenantFileError
from iam_sidecar.tenants.model import Path, TenantFile, semantic_problems


def _line_map(node: yaml.Node, path: Path, out: dict[Path, int]) -> None:
    out[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key)
            out[(*path, name)] = key.start_mark.line + 1
            _line_map(value, (*path, name), out)
            out[(*path, name)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_map(item, (*path, i), out)


def _line_for(path: Path, lines: dict[Path, int]) -> int | None:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None


def _field(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def parse_tenant_text(text: str, source: str = "<tenant file>") -> TenantFile:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise TenantFileError(source, [{"line": line, "field": None, "error": problem}]) from None
    if not isinstance(data, dict) or node is None:
        raise TenantFileError(source, [{"line": 1, "field": None, "error": "expected a mapping"}])
    lines: dict[Path, int] = {}
    _line_map(node, (), lines)
    try:
        spec = TenantFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False, include_input=False):
            path = tuple(p for p in err["loc"] if not str(p).startswith("function-after"))
            problems.append(
                {"line": _line_for(path, lines), "field": _field(path), "error": err["msg"]}
            )
        raise TenantFileError(source, problems) from None
    semantic = semantic_problems(spec)
    if semantic:
        raise TenantFileError(
            source,
            [
                {"line": _line_for(path, lines), "field": _field(path), "error": message}
                for path, message in semantic
            ],
        )
    return spec


def load_tenant_file(path: str | FsPath) -> TenantFile:
    path = FsPath(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TenantFileError(
            str(path), [{"line": None, "field": None, "error": exc.strerror or str(exc)}]
        ) from None
    return parse_tenant_text(text, str(path))
