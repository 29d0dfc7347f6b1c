"""Forwarded headers, believed only from the proxies named in SKYPORT_TRUSTED_PROXIES.

Behind a reverse proxy the peer of every request is the proxy; the proxy says who the client was
in `X-Forwarded-For` and which scheme it used in `X-Forwarded-Proto`. Anybody can send those
headers, so they are read only when the peer is a trusted proxy (an address or CIDR network in
SKYPORT_TRUSTED_PROXIES; default: none, and the headers are ignored). The client address then is
the right-most address in `X-Forwarded-For` that is not itself a trusted proxy (the left-most
ones are whatever the client wrote). The result is the request's `client` and `scheme`, which the
login limiter, the audit log and the session cookie see.

`skyport web` runs uvicorn with proxy_headers=False: this middleware is the only reader of the
headers (uvicorn's own would trust 127.0.0.1 by default).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
# Schemes a proxy may report.
SCHEMES = ("http", "https")


def _address(text: str) -> Address | None:
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class ForwardedHeaders:
    """ASGI middleware: the client address and scheme a trusted proxy forwarded."""

    def __init__(self, app: ASGIApp, *, trusted: Iterable[str]) -> None:
        self.app = app
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in trusted)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def client(self, peer: str, forwarded_for: list[str]) -> str:
        """The right-most address that is not a trusted proxy, walking back from the peer."""
        client = peer
        for hop in reversed(forwarded_for):
            address = _address(hop)
            if address is None:  # not an address: nothing further left is believable
                break
            client = str(address)
            if not self.trusts(address):
                break
        return client

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        peer = scope.get("client")
        if scope["type"] in ("http", "websocket") and peer and self.trusts(_address(peer[0])):
            headers = Headers(scope=scope)
            hops = [h for value in headers.getlist("x-forwarded-for") for h in value.split(",") if h.strip()]
            scope = {**scope}
            if hops:
                scope["client"] = (self.client(peer[0], hops), 0)
            protos = [p.strip().lower() for p in headers.get("x-forwarded-proto", "").split(",")]
            if protos[-1] in SCHEMES:  # the nearest proxy's word
                scope["scheme"] = protos[-1] if scope["type"] == "http" else protos[-1].replace("http", "ws")
        await self.app(scope, receive, send)
