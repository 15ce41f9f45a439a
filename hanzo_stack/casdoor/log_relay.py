"""Casdoor's output as our JSON log lines (``hanzo_contract/jsonlog.py``, service
``casdoor``), one event a line.

Casdoor logs through beego 1.12, whose adapters are console, file, multifile, conn (plain
lines to a socket), smtp, slack and Elasticsearch: none writes JSON to a file, so the
launcher (``ManagedProcess`` with ``relay``) points Casdoor's stdout and stderr at a pipe
and this process reads it: ``python -m hanzo_stack.casdoor.log_relay`` with the pipe as
its stdin and the log file as its stdout.

- beego's ``2026/11/26 16:17:23.991 [I] message`` gives the level (``[E]`` error,
  ``[W]`` warning, ...); Go's ``log`` lines (``2026/11/26 16:17:23 message``) and bare
  lines are ``info``, except a Go panic (``panic:``, ``fatal error:``), ``error``. Colour
  codes are dropped. Casdoor's lines carry no request id (its filters log the client
  address and path, not headers), so ``request_id`` is ``null``.
- Every line passes :func:`~hanzo_contract.jsonlog.redact`, so a password or client
  secret that reaches one is written as ``***``.
- The relay runs in a session of its own: a stop or kill of Casdoor's process group
  never reaches it. It ends when the pipe does (Casdoor, the only writer, exited), after
  writing every line Casdoor wrote, so a restart loses nothing; the next relay appends to
  the same file. It never stops reading: a line it cannot write (disk full) is dropped,
  never waited on, so Casdoor is never blocked on its own log. A line longer than
  :data:`LINE_LIMIT` is cut into several events.
"""

from __future__ import annotations

import logging
import os
import re
import sys

from hanzo_contract.jsonlog import JsonFormatter

SERVICE = "casdoor"
#: the longest event: a longer line is split (a runaway line cannot grow the relay)
LINE_LIMIT = 64 * 1024

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
#: ``2026/11/26 16:17:23[.991] [I]  message`` (beego), ``2026/11/26 16:17:23 message`` (Go)
_STAMPED = re.compile(
    r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)? +(?:\[(?P<level>[MACEWNID])\] +)?"
    r"(?P<message>.*)$",
    re.S,
)
_BEEGO_LEVELS = {
    "M": logging.CRITICAL,  # emergency
    "A": logging.CRITICAL,  # alert
    "C": logging.CRITICAL,
    "E": logging.ERROR,
    "W": logging.WARNING,
    "N": logging.INFO,  # notice
    "I": logging.INFO,
    "D": logging.DEBUG,
}
_GO_FATAL = ("panic:", "fatal error:")


def record(raw: bytes) -> logging.LogRecord:
    """One line of Casdoor's output as a log record (its level read from the line)."""
    text = _ANSI.sub("", raw.decode("utf-8", errors="replace")).rstrip("\r\n")
    level, message = logging.INFO, text
    stamped = _STAMPED.match(text)
    if stamped is not None:
        message = stamped.group("message")
        if stamped.group("level"):
            level = _BEEGO_LEVELS[stamped.group("level")]
    if message.startswith(_GO_FATAL):
        level = logging.ERROR
    return logging.LogRecord(SERVICE, level, "", 0, message.strip(), None, None)


def relay(source: int, sink: int) -> int:
    """Every line read from ``source`` written to ``sink`` as one JSON line, until the
    pipe ends; the number of lines dropped because ``sink`` refused them."""
    formatter = JsonFormatter(SERVICE)
    dropped = 0
    with os.fdopen(source, "rb", buffering=1 << 16, closefd=False) as lines:
        while raw := lines.readline(LINE_LIMIT):
            if not raw.strip():
                continue
            line = formatter.format(record(raw)) + "\n"
            try:
                os.write(sink, line.encode())  # one write a line: whole lines on O_APPEND
            except OSError:
                dropped += 1
    return dropped


def main() -> None:
    dropped = relay(sys.stdin.fileno(), sys.stdout.fileno())
    if dropped:
        note = f"{dropped} casdoor log lines could not be written"
        warning = logging.LogRecord(__name__, logging.WARNING, "", 0, note, None, None)
        # stderr is the same file: it may take this line even if it refused others
        sys.stderr.write(JsonFormatter(SERVICE).format(warning) + "\n")


if __name__ == "__main__":
    main()
