"""What a call may cost, before it is made: the tokens a reservation holds.

No tokenizer of the upstream's model runs here (the models are someone else's), so the
prompt is counted conservatively: a token per four bytes of its JSON (``json.dumps``
escapes every non-ASCII character to six bytes, so scripts with fewer characters per
token are not under-counted either). The completion is counted at the most the upstream
may produce: ``max_tokens`` (or ``max_completion_tokens``) times ``n``. A call that names
no cap gets the route's default, which is also sent upstream, so the estimate holds. The
settlement after the call replaces the estimate by what the upstream reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from inference_gateway.errors import InferenceError

#: OpenAI's own bound on ``n``
MAX_CHOICES = 128


def prompt_estimate(payload: object) -> int:
    """Tokens of a prompt (``messages`` or ``input``), about four bytes of JSON each."""
    return len(json.dumps(payload)) // 4


def _count(body: dict[str, Any], name: str, low: int, high: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InferenceError(
            400, f"invalid_{name}", f"{name} must be an integer from {low} to {high}"
        )
    return value


@dataclass(frozen=True)
class Estimate:
    prompt: int
    completion: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion


def chat_estimate(body: dict[str, Any], default_max_tokens: int) -> Estimate:
    """The most a chat call may cost; sets ``max_tokens`` to ``default_max_tokens`` in
    ``body`` when the caller named no cap (so the upstream stops where we counted)."""
    caps = [
        cap
        for cap in (
            _count(body, "max_tokens", 0, 10**7),
            _count(body, "max_completion_tokens", 0, 10**7),
        )
        if cap is not None
    ]
    if not caps:
        body["max_tokens"] = default_max_tokens
        caps = [default_max_tokens]
    choices = _count(body, "n", 1, MAX_CHOICES) or 1
    return Estimate(prompt_estimate(body.get("messages", "")), max(caps) * choices)


def embeddings_estimate(body: dict[str, Any]) -> Estimate:
    """An embeddings call spends its input only."""
    return Estimate(prompt_estimate(body.get("input", "")) + 1, 0)
