"""The device-code grant (RFC 8628) for machines without a browser, against real Casdoor."""

from __future__ import annotations

from typing import Any

import httpx

from hanzo_client import HanzoClient
from hanzo_client.login import device_login, shared_client_id

from .support import RunningStack


def test_device_code_sign_in_then_a_device_key(running_stack: RunningStack) -> None:
    stack = running_stack
    casdoor = stack.info.casdoor_url
    shown: list[dict[str, Any]] = []

    def approve_elsewhere(start: dict[str, Any]) -> None:
        """What the user does on another device: sign in and enter the user code."""
        shown.append(start)
        reply = httpx.post(
            f"{casdoor}/api/login",
            json={
                "application": "hanzo-cli-org-acme",
                "organization": "acme",
                "username": "bob",
                "password": stack.password("ACME_BOB_PASSWORD"),
                "type": "device",
                "userCode": start["user_code"],
            },
        ).json()
        assert reply["status"] == "ok", reply

    tokens = device_login(
        casdoor, shared_client_id(stack.cli_client_id, "acme"), approve_elsewhere, timeout=60
    )
    assert shown and shown[0]["user_code"] and shown[0]["device_code"]
    with HanzoClient(stack.gateway, tokens["access_token"]) as client:
        minted = client.create_key("bob-device", ["memory:read"])
    assert minted["record"]["owner"] == "acme/bob"
    assert minted["record"]["scopes"] == ["memory:read"]
