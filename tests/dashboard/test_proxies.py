"""X-Forwarded-For and X-Forwarded-Proto are believed only from SKYPORT_TRUSTED_PROXIES, for the
login limiter, the audit log and the scheme."""

from __future__ import annotations

import asyncio

import pytest

import config
from dashboard.proxies import ForwardedHeaders
from tests.dashboard.support import api_login, use_cheap_hashes, web_process


def _seen(trusted: list[str], peer: str, headers: dict[str, str]) -> tuple[str, str]:
    """The client address and scheme the app behind the middleware sees."""
    seen: dict[str, object] = {}

    async def app(scope, receive, send) -> None:
        seen.update(scope)

    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 4000),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(ForwardedHeaders(app, trusted=trusted)(scope, None, None))
    return seen["client"][0], seen["scheme"]


XFF = "X-Forwarded-For"
PROTO = "X-Forwarded-Proto"


@pytest.mark.parametrize(
    "trusted, peer, headers, expected",
    [
        # No trusted proxy (the default): the headers are ignored, even from 127.0.0.1.
        ([], "127.0.0.1", {XFF: "6.6.6.6", PROTO: "https"}, ("127.0.0.1", "http")),
        # A peer outside the trusted networks: ignored.
        (["10.0.0.0/8"], "192.0.2.1", {XFF: "6.6.6.6", PROTO: "https"}, ("192.0.2.1", "http")),
        # A trusted proxy: the right-most address that is not a trusted proxy.
        (["10.0.0.0/8"], "10.0.0.5", {XFF: "6.6.6.6, 203.0.113.9", PROTO: "https"}, ("203.0.113.9", "https")),
        (["10.0.0.0/8"], "10.0.0.5", {XFF: "203.0.113.9, 10.1.1.1"}, ("203.0.113.9", "http")),
        # Every hop trusted: the left-most.
        (["10.0.0.0/8"], "10.0.0.5", {XFF: "10.2.2.2, 10.1.1.1"}, ("10.2.2.2", "http")),
        # Garbage stops the walk at the last believable address.
        (["10.0.0.0/8"], "10.0.0.5", {XFF: "203.0.113.9, not-an-ip"}, ("10.0.0.5", "http")),
        (["10.0.0.0/8"], "10.0.0.5", {PROTO: "gopher"}, ("10.0.0.5", "http")),
        (["10.0.0.5/32", "::1/128"], "::1", {XFF: "2001:db8::7", PROTO: "HTTPS"}, ("2001:db8::7", "https")),
    ],
)
def test_forwarded_headers_only_from_trusted_proxies(trusted, peer, headers, expected) -> None:
    assert _seen(trusted, peer, headers) == expected


def test_trusted_proxies_are_addresses_or_networks() -> None:
    assert config.load({"SKYPORT_TRUSTED_PROXIES": "10.0.0.1, 172.16.0.0/12"}).web.trusted_proxies == (
        "10.0.0.1/32",
        "172.16.0.0/12",
    )
    assert config.load({}).web.trusted_proxies == ()
    with pytest.raises(config.ConfigError, match="SKYPORT_TRUSTED_PROXIES"):
        config.load({"SKYPORT_TRUSTED_PROXIES": "10.0.0.1, proxy.internal"})


def _retry_as_ann(client, dead_job) -> None:
    token = api_login(client, "ann")
    response = client.post(
        f"/api/jobs/{dead_job('fwd')}/retry", headers={"X-CSRF-Token": token, XFF: "6.6.6.6"}
    )
    assert response.status_code == 200, response.text


def test_the_audit_log_and_the_limiter_see_the_forwarded_client(
    dashboard_env, monkeypatch, conn, dead_job
) -> None:
    use_cheap_hashes(monkeypatch)
    with web_process("10.0.0.5") as untrusted:  # SKYPORT_TRUSTED_PROXIES unset: the peer it is
        _retry_as_ann(untrusted, dead_job)
        untrusted.post("/api/login", json={"username": "ann", "password": "x"}, headers={XFF: "6.6.6.6"})
    monkeypatch.setenv("SKYPORT_TRUSTED_PROXIES", "10.0.0.0/8")
    with web_process("10.0.0.5") as proxied:
        _retry_as_ann(proxied, dead_job)
        proxied.post("/api/login", json={"username": "ann", "password": "x"}, headers={XFF: "198.51.100.4"})
    ips = conn.execute("SELECT host(ip_address) FROM audit_log ORDER BY audit_id").fetchall()
    assert ips == [("10.0.0.5",), ("6.6.6.6",)]
    failures = conn.execute("SELECT address FROM console_login_failures ORDER BY id").fetchall()
    assert failures == [("10.0.0.5",), ("198.51.100.4",)]
