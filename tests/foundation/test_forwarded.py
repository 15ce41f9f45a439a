"""Forwarded addresses count only from configured proxies."""

from __future__ import annotations

import pytest

from hanzo_contract.forwarded import ClientAddress, parse_networks


def test_client_forwarded_for_is_ignored_from_untrusted_peers():
    addresses = ClientAddress()  # loopback only
    assert addresses.resolve("198.51.100.7", "203.0.113.66") == "198.51.100.7"
    assert addresses.resolve("198.51.100.7", None, "203.0.113.67") == "198.51.100.7"
    assert addresses.resolve(None, "203.0.113.66") is None


def test_trusted_proxy_chain_is_walked_from_the_right():
    addresses = ClientAddress(["127.0.0.0/8", "10.0.0.0/8"])
    # a local gateway that wrote the peer it saw
    assert addresses.resolve("127.0.0.1", "198.51.100.7") == "198.51.100.7"
    # the client prepended a lie; the trusted hops appended the truth
    assert addresses.resolve("127.0.0.1", "203.0.113.66, 198.51.100.7, 10.1.2.3") == (
        "198.51.100.7"
    )
    assert addresses.resolve("127.0.0.1", None, "198.51.100.8") == "198.51.100.8"
    assert addresses.resolve("127.0.0.1", "not-an-ip") == "127.0.0.1"
    assert addresses.resolve("127.0.0.1", "203.0.113.66, junk, 10.0.0.9") == "10.0.0.9"
    assert ClientAddress().resolve("::1", "2001:db8::5") == "2001:db8::5"


def test_bad_cidr_is_refused():
    with pytest.raises(ValueError, match="not an IP network"):
        parse_networks(["10.0.0.0/33"])
