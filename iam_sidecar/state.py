"""Everything one running sidecar holds, shared by its routes and its reconcile loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from hanzo_contract.assertion import AssertionVerifier
from iam_sidecar.casdoor_client import CasdoorClient
from iam_sidecar.key_service import KeyService
from iam_sidecar.keystore import KeyStore
from iam_sidecar.metrics import SidecarMetrics
from iam_sidecar.policy import EMPTY_POLICY, TenantPolicy
from iam_sidecar.resolver import OwnerResolver
from iam_sidecar.settings import SidecarSettings


@dataclass
class SidecarState:
    settings: SidecarSettings
    store: KeyStore
    casdoor: CasdoorClient
    resolver: OwnerResolver
    keys: KeyService
    verifier: AssertionVerifier | None
    metrics: SidecarMetrics = field(default_factory=SidecarMetrics)
    policy: TenantPolicy = EMPTY_POLICY
    last_reconcile_error: str | None = None
