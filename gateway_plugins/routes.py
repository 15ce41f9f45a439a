"""Route table: method + path pattern -> required permission, default deny.

Patterns are literal paths with ``{name}`` for one segment and a trailing ``{rest*}`` for
any remainder. ``tokens: true`` marks a route that spends model tokens (token quotas
apply). A route with ``permission: null`` is public (no credential needed); ``permission:
authenticated`` needs a valid credential but no particular scope. A path
that matches no route is denied: the table is the whole surface a gateway exposes. Each route
names the ``audience`` of its upstream: the identity assertion is signed for that receiver
only (``hanzo_contract.assertion``). ``on_limiter_down`` (``open``, ``closed``, ``local``)
says what the route's limits do when the limiter store is unreachable; unset, the
gateway's ``limiter_fail_mode`` applies.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hanzo_contract.assertion import AUDIENCE
from hanzo_contract.principal import Principal
from hanzo_contract.scopes import KNOWN_SCOPES

_AUDIENCE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
#: the most (method, path) pattern matches a table remembers
_MATCHED_SIZE = 4096
_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\*?)\}")


#: a route anyone with a valid credential may call; the upstream decides the rest
AUTHENTICATED = "authenticated"


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(min_length=1)
    path: str = Field(pattern=r"^/")
    permission: str | None
    #: the route spends model tokens: refused with 429 once a token quota is used up
    tokens: bool = False
    #: the upstream's name in the assertion's ``aud`` (a list where one upstream passes the
    #: request on to another, as the inference gateway does to the memory service's model);
    #: the default is accepted by none
    audience: str | list[str] = AUDIENCE
    #: when the limiter store is down: allow, refuse with 503, or count in this process;
    #: ``None``: the gateway's ``limiter_fail_mode``
    on_limiter_down: Literal["open", "closed", "local"] | None = None

    @field_validator("audience")
    @classmethod
    def _audience_names(cls, value: str | list[str]) -> str | list[str]:
        names = [value] if isinstance(value, str) else value
        if not names or not all(_AUDIENCE_NAME.fullmatch(name) for name in names):
            raise ValueError("audience: one or more names of [A-Za-z0-9_.:-]{1,64}")
        return value

    @field_validator("methods")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        return [m.upper() for m in value]

    @field_validator("permission")
    @classmethod
    def _registered(cls, value: str | None) -> str | None:
        """A route may require only a scope the registry knows: a typo would deny everyone,
        and a made-up scope is one the tenant file could never grant."""
        if value is None or value == AUTHENTICATED or value in KNOWN_SCOPES:
            return value
        known = ", ".join(sorted(KNOWN_SCOPES))
        raise ValueError(f"unknown scope {value!r} (known: {known}, authenticated, null)")


class RouteTableSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    routes: list[RouteSpec]


@dataclass(frozen=True, slots=True)
class RouteMatch:
    permission: str | None
    pattern: str
    tokens: bool = False
    audience: str | tuple[str, ...] = AUDIENCE
    on_limiter_down: str | None = None

    @property
    def public(self) -> bool:
        return self.permission is None

    def permits(self, principal: Principal) -> bool:
        return self.permission == AUTHENTICATED or principal.has(self.permission or "")


def _compile(path: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _SEGMENT.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        if m.group(2):
            if m.end() != len(path):
                raise ValueError(f"{{{m.group(1)}*}} must end the pattern: {path}")
            out.append(".*")
        else:
            out.append("[^/]+")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out) + r"\Z")


class RouteTable:
    def __init__(self, spec: RouteTableSpec) -> None:
        self._literal: dict[tuple[str, str], RouteMatch] = {}
        self._patterns: list[tuple[frozenset[str], re.Pattern[str], RouteMatch]] = []
        #: the pattern route a (method, path) matched, or None, remembered: a path with an
        #: id in it repeats per caller, and trying every regex of the table cost more than
        #: the rest of the match. Bounded (a client walking ids only misses its own).
        self._match_pattern = functools.lru_cache(maxsize=_MATCHED_SIZE)(self._try_patterns)
        for route in spec.routes:
            audience = route.audience
            if not isinstance(audience, str):
                audience = tuple(audience)
            match = RouteMatch(
                route.permission, route.path, route.tokens, audience, route.on_limiter_down
            )
            if _SEGMENT.search(route.path) is None and "*" not in route.methods:
                for method in route.methods:
                    self._literal.setdefault((method, route.path), match)
            else:
                self._patterns.append((frozenset(route.methods), _compile(route.path), match))

    @classmethod
    def from_yaml(cls, text: str) -> RouteTable:
        return cls(RouteTableSpec.model_validate(yaml.safe_load(text)))

    @classmethod
    def load(cls, path: Path | None) -> RouteTable:
        if path is None:
            text = resources.files("gateway_plugins").joinpath("routes.default.yaml").read_text()
        else:
            text = path.read_text()
        return cls.from_yaml(text)

    def match(self, method: str, path: str) -> RouteMatch | None:
        """The route for ``method path`` (path without query), or ``None``: deny."""
        found = self._literal.get((method, path))
        if found is not None:
            return found
        return self._match_pattern(method, path)

    def _try_patterns(self, method: str, path: str) -> RouteMatch | None:
        for methods, regex, route in self._patterns:
            if (method in methods or "*" in methods) and regex.match(path):
                return route
        return None
