"""Assembling the server app from settings: the tenant file (if any) seeds the served
policy and becomes the reconcile loop's first step."""

from __future__ import annotations

from starlette.applications import Starlette

from iam_sidecar.app import create_app
from iam_sidecar.settings import SidecarSettings
from iam_sidecar.tenants.desired import policy_of
from iam_sidecar.tenants.loader import load_tenant_file
from iam_sidecar.tenants.sync import tenant_step


def build_app(settings: SidecarSettings) -> Starlette:
    """Fails fast (``TenantFileError``) if the configured tenant file is invalid at start."""
    if settings.tenant_file is None:
        return create_app(settings)
    spec = load_tenant_file(settings.tenant_file)
    return create_app(
        settings,
        policy=policy_of(spec),
        tenant_step=tenant_step(
            settings.tenant_file, prune=settings.reconcile_prune, apply=settings.reconcile_apply
        ),
    )
