"""One JSON log line per event, the same shape from every part, secrets scrubbed.

Each line: ``time`` (UTC, ISO 8601), ``level``, ``service``, ``request_id`` (the request
being served, ``null`` outside one), ``logger``, ``message``, then the record's own fields
(``extra=``), and for uvicorn's access log the method, path and status. Every line passes
through :func:`redact` last, so an API key, a bearer token, a JWT or a password that reaches
a message, a query string or a traceback is written as ``***``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from hanzo_contract.apikey import KEY_PREFIX
from hanzo_contract.request_id import current_request_id

#: attributes every LogRecord has: anything else on a record is a field the caller added
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
#: names whose values are secrets (the names themselves are not)
_SECRET_NAMES = "|".join(
    (
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "x-api-key",
        "key",
        "code",
        "code_verifier",
        "authorization",
    )
)
_REDACTIONS: tuple[tuple[re.Pattern[str], str], ...] = (
    # our API keys keep their public id (hk-<id>), never the secret part
    (
        re.compile(re.escape(KEY_PREFIX) + r"([A-Za-z0-9]{12})_[A-Za-z0-9_-]+"),
        KEY_PREFIX + r"\1_***",
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), "***"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[^\s\"',;]+"), r"\1\2***"),
    # name=value in query strings and form bodies
    (re.compile(r"(?i)\b(" + _SECRET_NAMES + r")=([^&\s\"']+)"), r"\1=***"),
    # "name": "value" in JSON
    (re.compile(r'(?i)("(?:' + _SECRET_NAMES + r')"\s*:\s*")((?:[^"\\]|\\.)*)"'), r'\1***"'),
)


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``***``."""
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """The shared line format; ``service`` names the part (sidecar, gateway, memory, ...)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "request_id": current_request_id(),
            "logger": record.name,
        }
        if (
            record.name == "uvicorn.access"
            and isinstance(record.args, tuple)
            and len(record.args) == 5
        ):
            client, method, path, version, status = record.args
            line["message"] = f"{method} {path} {status}"
            line.update(
                client=client, method=method, path=path, http_version=version, status=status
            )
        else:
            line["message"] = record.getMessage()
        for name, value in vars(record).items():
            if name not in _STANDARD and name not in line:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return redact(json.dumps(line, default=str, ensure_ascii=False))


def configure(service: str, level: int | str = logging.INFO) -> None:
    """Route every logger (uvicorn's included: run it with ``log_config=None``) through one
    stderr handler with the shared format; called once by each ``serve`` command."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # one line per outgoing call would double every request's lines; warnings still pass
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
