"""Posting callbacks the way a gateway does, cheaply: a small asyncio HTTP/1.1 client with
keep-alive connections (the simulator's and the bench's client, demo/payments_simulator.py).

A general-purpose client (httpx) spends about 1.2 ms of CPU per request on this machine, more
than the web process it loads spends answering; this one spends a small fraction of that, so a
simulator on the same machine measures the web process, not itself. It speaks only what the
webhook needs: POST with a body, a Content-Length or chunked answer, `Connection: close`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

# Largest response head (status line + headers) accepted.
MAX_HEAD_BYTES = 64 * 1024


class ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 this client understands."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    path: str
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        port = parts.port or (443 if tls else 80)
        return cls(parts.hostname, port, parts.path or "/", tls)

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        return self.host if self.port == default else f"{self.host}:{self.port}"


class Connection:
    """One keep-alive connection; reconnects after the server closed it or an error."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._request_line = f"POST {endpoint.path} HTTP/1.1\r\nHost: {endpoint.host_header}\r\n".encode()

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """POST `body`; returns (status, response body). Any failure closes the connection. A kept
        connection the server closed while it was idle (its keep-alive timeout) is opened again and
        the request sent once more (a gateway's callbacks are idempotent by event id)."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = b"".join(
            (self._request_line, head.encode(), b"Content-Length: %d\r\n\r\n" % len(body), body)
        )
        reused = self._writer is not None
        try:
            return await self._exchange(request)
        except (ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
        return await self._exchange(request)

    async def _exchange(self, request: bytes) -> tuple[int, bytes]:
        try:
            if self._writer is None:
                await self._connect()
            assert self._reader is not None and self._writer is not None
            self._writer.write(request)
            return await self._read_response()
        except BaseException:
            self.close()
            raise

    async def _connect(self) -> None:
        context = ssl.create_default_context() if self.endpoint.tls else None
        self._reader, self._writer = await asyncio.open_connection(
            self.endpoint.host, self.endpoint.port, ssl=context, limit=MAX_HEAD_BYTES
        )

    async def _read_response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        try:
            head = await self._reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError("the server closed the connection") from exc
        except asyncio.LimitOverrunError as exc:
            raise ProtocolError("response head too large") from exc
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"bad status line {lines[0]!r}")
        status = int(code)
        fields: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                fields[name.strip().lower()] = value.strip()
        if fields.get("transfer-encoding", "").lower() == "chunked":
            body = await self._read_chunked()
        elif "content-length" in fields:
            body = await self._reader.readexactly(int(fields["content-length"]))
        else:  # the body runs until the server closes the connection
            body = await self._reader.read()
            fields["connection"] = "close"
        if fields.get("connection", "").lower() == "close" or version == "HTTP/1.0":
            self.close()
        return status, body

    async def _read_chunked(self) -> bytes:
        assert self._reader is not None
        chunks = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                while (await self._reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                    pass
                return b"".join(chunks)
            chunks.append(await self._reader.readexactly(size))
            await self._reader.readexactly(2)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
