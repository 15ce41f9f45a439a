"""Which address a request came from, trusting forwarded headers only from known proxies.

``X-Forwarded-For`` is whatever the previous hop wrote: from a client it is a lie the
client chose. A service believes it only when the TCP peer is one of its configured proxies
(CIDRs; loopback by default, for a gateway on the same host), and then walks the list from
the right, skipping addresses of trusted proxies, to the first one it did not configure:
that is the client. The gateway (audit of denials) and the sidecar (audit of key changes)
agree on this, so one forged header cannot become the source of an audit row anywhere.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: trusted when nothing is configured: a gateway on the same host
DEFAULT_TRUSTED_PROXIES: tuple[str, ...] = ("127.0.0.0/8", "::1/128")


def parse_networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    """CIDRs (or bare addresses) as networks; raises ``ValueError`` naming a bad one."""
    out = []
    for cidr in cidrs:
        try:
            out.append(ipaddress.ip_network(cidr.strip(), strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {cidr!r}") from None
    return tuple(out)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddress:
    """Resolves the client address of a request from its peer and forwarded headers."""

    def __init__(self, trusted: Iterable[str] = DEFAULT_TRUSTED_PROXIES) -> None:
        self._trusted = parse_networks(trusted)

    def trusts(self, address: str | None) -> bool:
        ip = _ip(address) if address else None
        return ip is not None and any(ip in net for net in self._trusted)

    def resolve(
        self, peer: str | None, forwarded_for: str | None = None, real_ip: str | None = None
    ) -> str | None:
        """The client: the peer itself unless the peer is a trusted proxy; then the
        right-most forwarded address that is not a trusted proxy (or ``X-Real-IP``)."""
        if not self.trusts(peer):
            return peer
        hops = [h for h in (forwarded_for or "").split(",") if h.strip()]
        if not hops and real_ip:
            hops = [real_ip]
        client = peer
        for hop in reversed(hops):
            ip = _ip(hop)
            if ip is None:  # garbage in the chain: believe nothing to the left of it
                break
            client = str(ip)
            if not self.trusts(client):
                break
        return client
