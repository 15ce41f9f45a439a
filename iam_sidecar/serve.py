"""Assembling the server app from settings: tenant file (if any) feeds the reconcile loop."""

from __future__ import annotations

from starlette.applications import Starlette

from iam_sidecar.app import create_app
from iam_sidecar.settings import SidecarSettings


def build_app(settings: SidecarSettings) -> Starlette:
    return create_app(settings)
