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
import time
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
        "clientsecret",  # Casdoor's camelCase clientSecret (the match ignores case)
        "newpassword",
        "oldpassword",
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
_KEY = re.compile(re.escape(KEY_PREFIX) + r"([A-Za-z0-9]{12})_[A-Za-z0-9_-]+")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_SCHEME = re.compile(r"(?i)\b(bearer|basic)(\s+|%20)[^\s\"',;&]+")
#: name=value in query strings and form bodies
_PAIR = re.compile(r"(?i)\b(" + _SECRET_NAMES + r")=([^&\s\"']+)")
#: "name": "value" in JSON text inside a message
_JSON_PAIR = re.compile(r'(?i)("(?:' + _SECRET_NAMES + r')"\s*:\s*")((?:[^"\\]|\\.)*)"')
_SECRET_KEY = re.compile(r"(?i)" + _SECRET_NAMES)
#: cheap substring checks that decide which patterns can match at all: a line without
#: any of them (most access lines) costs a few scans in C, not a regex pass per pattern
_NAME_HINTS = ("pass", "secret", "token", "key", "code", "authoriz")


def redact(text: str) -> str:
    """``text`` with every credential-shaped value replaced by ``***``."""
    if KEY_PREFIX in text:
        text = _KEY.sub(KEY_PREFIX + r"\1_***", text)
    if "eyJ" in text:
        text = _JWT.sub("***", text)
    lowered = text.lower()
    if "bearer" in lowered or "basic" in lowered:
        text = _SCHEME.sub(r"\1\2***", text)
    if any(hint in lowered for hint in _NAME_HINTS):
        if "=" in text:
            text = _PAIR.sub(r"\1=***", text)
        if '"' in text:
            text = _JSON_PAIR.sub(r'\1***"', text)
    return text


def _scrub(value: Any) -> Any:
    """A field's value with the values under secret names replaced (dicts, lists)."""
    if isinstance(value, dict):
        return {k: "***" if _SECRET_KEY.fullmatch(str(k)) else _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


def utc_seconds(created: float) -> str:
    """A line's ``time`` up to the second (``2026-11-26T17:33:38``); a writer that builds
    lines by hand caches it per second and appends ``.mmm+00:00``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))


def _utc(created: float, msecs: float) -> str:
    """ISO 8601 in UTC with milliseconds (``2026-11-26T17:33:38.123+00:00``)."""
    return utc_seconds(created) + f".{int(msecs):03d}+00:00"


class JsonFormatter(logging.Formatter):
    """The shared line format; ``service`` names the part (sidecar, gateway, memory, ...)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record.created, record.msecs),
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
            # before the line is dumped: JSON text inside a message has its quotes
            # escaped afterwards, where a "name": "value" pair no longer matches
            line["message"] = redact(record.getMessage())
        fields = vars(record)
        for name in fields.keys() - _STANDARD - line.keys():
            value = fields[name]
            line[name] = "***" if _SECRET_KEY.fullmatch(name) else _scrub(value)
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
