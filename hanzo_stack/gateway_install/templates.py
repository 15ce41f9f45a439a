"""Where the templates live (``deploy/``) and how placeholders are filled."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

DEPLOY_DIR = Path(__file__).resolve().parents[2] / "deploy"


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace each ``{{NAME}}``; one left over is a template the renderer does not know."""
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    if "{{" in template:
        start = template.index("{{")
        raise ValueError(f"unfilled placeholder {template[start : start + 30]!r}")
    return template
