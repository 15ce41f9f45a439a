"""One bounded schemathesis run of an OpenAPI operation, shared by the API fuzz tests.

Schemathesis generates the cases from the document the service publishes; hypothesis
runs them with a fixed seed (``derandomize``), a cap on examples and a wall-clock budget
for the whole run (later operations get fewer examples if an earlier one was slow).
``prepare`` may steer a case with more of hypothesis's data (a real id, a valid scope) so
the run reaches past the first validation error; ``inspect`` adds the caller's own checks
to schemathesis's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import hypothesis
from hypothesis import strategies as st

#: ``prepare(case, data)``: changes ``case`` in place, drawing from ``data``
Prepare = Callable[[Any, st.DataObject], None]
#: ``inspect(case, response)``: what is wrong with this answer, if anything
Inspect = Callable[[Any, httpx.Response], list[str]]


def fuzz(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    deadline: float,
    *,
    max_examples: int,
    checks: Sequence[Any],
    prepare: Prepare | None = None,
    inspect: Inspect | None = None,
) -> tuple[dict[int, int], list[str]]:
    """Send ``operation``'s generated cases until its examples or the budget run out:
    the status codes seen, and every check that failed."""
    counts: dict[int, int] = {}
    failures: list[str] = []

    @hypothesis.settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,  # the fixed seed: the same cases on every run
        database=None,
        phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy(), data=st.data())
    def run(case: Any, data: st.DataObject) -> None:
        if time.monotonic() > deadline:
            return
        if prepare is not None:
            prepare(case, data)
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        counts[response.status_code] = counts.get(response.status_code, 0) + 1
        label = f"{operation.label} -> {response.status_code}"
        try:
            case.validate_response(response, checks=list(checks))
        except (Exception, BaseExceptionGroup) as exc:  # a FailureGroup: report them all
            failures.append(f"{label}: {exc}"[:2000])
        if inspect is not None:
            failures.extend(f"{label}: {problem}"[:2000] for problem in inspect(case, response))

    run()
    return counts, failures
