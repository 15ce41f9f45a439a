"""Which upstream serves a model, and which models a caller may see."""

from __future__ import annotations

from dataclasses import dataclass

from hanzo_contract.headers import ASSERTION
from hanzo_contract.principal import Principal
from inference_gateway.errors import InferenceError
from inference_gateway.settings import UpstreamSettings


@dataclass(frozen=True)
class Upstream:
    spec: UpstreamSettings

    def url(self, path: str) -> str:
        return self.spec.base_url.rstrip("/") + path

    def headers(self, assertion: str) -> dict[str, str]:
        """What the upstream gets: its own key, or (our services) the caller's assertion;
        never the caller's Hanzo key."""
        out = {"Content-Type": "application/json"}
        if self.spec.api_key is not None:
            out["Authorization"] = f"Bearer {self.spec.api_key.get_secret_value()}"
        if self.spec.identity:
            out[ASSERTION] = assertion
        return out


class UpstreamTable:
    def __init__(self, specs: list[UpstreamSettings]) -> None:
        self._by_model: dict[str, Upstream] = {}
        for spec in specs:
            for model in spec.models:
                if model in self._by_model:
                    raise ValueError(f"model {model!r} is served by two upstreams")
                self._by_model[model] = Upstream(spec)

    def models(self, principal: Principal) -> list[str]:
        """The models ``principal``'s plan (or key) allows, of those served here."""
        return [m for m in self._by_model if principal.limits.allows_model(m)]

    def for_model(self, model: object, principal: Principal) -> Upstream:
        if not isinstance(model, str) or not model:
            raise InferenceError(400, "invalid_model", "model must be a non-empty string")
        upstream = self._by_model.get(model)
        if upstream is None:
            raise InferenceError(404, "model_not_found", f"model {model[:200]!r} is not served")
        if not principal.limits.allows_model(model):
            raise InferenceError(403, "model_not_allowed", f"your plan does not include {model!r}")
        return upstream
