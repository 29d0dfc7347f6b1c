"""The simulator's HTTP/1.1 client against a small loopback server: keep-alive, chunked and
Connection: close answers, and a kept connection the server closed while idle."""

from __future__ import annotations

import asyncio

from demo.delivery import Connection, Endpoint


async def _serve(answers: list[bytes], close_after_each: bool, seen: list[tuple[int, bytes]]):
    """A server answering each request with the next of `answers`; records (connection no., body)."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        number = connections
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                break
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length"))[15:])
            seen.append((number, await reader.readexactly(length)))
            writer.write(answers.pop(0))
            await writer.drain()
            if close_after_each:
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_keep_alive_chunked_and_close_answers() -> None:
    answers = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        b"HTTP/1.1 401 Unauthorized\r\ntransfer-encoding: chunked\r\n\r\n3\r\nbad\r\n4\r\n sig\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nlast",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nagain",
    ]
    seen: list[tuple[int, bytes]] = []

    async def main() -> list[tuple[int, bytes]]:
        server = await _serve(answers, close_after_each=False, seen=seen)
        port = server.sockets[0].getsockname()[1]
        connection = Connection(Endpoint.parse(f"http://127.0.0.1:{port}/webhooks/payments/x"))
        results = [await connection.post(f"body{i}".encode(), {"X-Test": "1"}) for i in range(4)]
        connection.close()
        server.close()
        return results

    assert asyncio.run(main()) == [(200, b"ok"), (401, b"bad sig"), (200, b"last"), (200, b"again")]
    # One connection for the first three; the server's "connection: close" made the client open another.
    assert seen == [(1, b"body0"), (1, b"body1"), (1, b"body2"), (2, b"body3")]


def test_a_kept_connection_closed_by_the_server_is_opened_again_and_the_request_sent_once() -> None:
    answers = [b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n" + str(i).encode() for i in range(3)]
    seen: list[tuple[int, bytes]] = []

    async def main() -> list[tuple[int, bytes]]:
        # The server closes every connection after one answer, without saying so (a keep-alive timeout).
        server = await _serve(answers, close_after_each=True, seen=seen)
        port = server.sockets[0].getsockname()[1]
        connection = Connection(Endpoint.parse(f"http://127.0.0.1:{port}/"))
        results = []
        for i in range(3):
            results.append(await connection.post(f"b{i}".encode(), {}))
            await asyncio.sleep(0.05)  # the server's close reaches the client meanwhile
        connection.close()
        server.close()
        return results

    assert asyncio.run(main()) == [(200, b"0"), (200, b"1"), (200, b"2")]
    assert seen == [(1, b"b0"), (2, b"b1"), (3, b"b2")]  # each request sent once, each on a new connection
