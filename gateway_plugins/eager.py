"""Run a coroutine at once, in the caller, until it first has to wait.

A cached key's decision never waits on anything (the principal, the limiter's counters and
the signed identity are all in memory), yet as an asyncio task it would pay for the task,
a turn of the event loop and the ASGI message round trip. :func:`start` runs it in place:
when it finishes without waiting, its result is there at once; when it does wait (a cache
miss asks the sidecar, a Redis limiter asks Redis), the rest of it is an awaitable that any
task can finish, exactly as if the coroutine had been awaited from the start (Python 3.12's
eager tasks, for 3.11).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Resumed(Generic[T]):
    """The rest of a coroutine that has run to its first wait: awaiting this hands each
    future the coroutine waits on to the awaiting task and sends back what it gets, as
    ``await coroutine`` would have. Await it once."""

    def __init__(self, coroutine: Coroutine[Any, Any, T], waiting_on: Any) -> None:
        self._coroutine = coroutine
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, Any, T]:
        coroutine, waiting_on = self._coroutine, self._waiting_on
        while True:
            try:
                sent = yield waiting_on
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, thrown in where it waits
                try:
                    waiting_on = coroutine.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                continue
            try:
                waiting_on = coroutine.send(sent)
            except StopIteration as done:
                return done.value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Drop the rest unrun (the coroutine sees ``GeneratorExit`` where it waits)."""
        self._coroutine.close()


def start(coroutine: Coroutine[Any, Any, T]) -> tuple[bool, T | Resumed[T]]:
    """``(True, result)`` when ``coroutine`` finished without waiting; ``(False, rest)``
    when it waits, ``rest`` being what to await for its result. Its exceptions propagate
    from here or from awaiting the rest, wherever they are raised."""
    try:
        waiting_on = coroutine.send(None)
    except StopIteration as done:
        return True, done.value
    return False, Resumed(coroutine, waiting_on)
