"""Clients that hold a server's resources on purpose: trickled or stalled uploads, idle
keep-alive connections. Raw asyncio sockets, so hundreds fit in one test process and each
byte is sent exactly when the test says.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

BOUNDARY = "slowclientboundary"
_PROLOGUE = (
    f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="slow.wav"\r\n'
    "Content-Type: audio/wav\r\n\r\n"
).encode()


@dataclass(frozen=True)
class Outcome:
    """How a held request ended: the status the server answered, or ``None`` if it closed
    the connection without an answer; after how long; the answer's headers and body; how
    many of the file's bytes were sent."""

    status: int | None
    elapsed_s: float
    headers: dict[str, str]
    body: bytes
    sent_bytes: int


async def _read_response(
    reader: asyncio.StreamReader,
) -> tuple[int | None, dict[str, str], bytes]:
    """Status, headers and body (by Content-Length); ``None`` when the server hung up first."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(":") for line in lines if line)
        }
        body = await reader.readexactly(int(headers.get("content-length", 0)))
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, {}, b""
    return int(status_line.split()[1]), headers, body


async def held_upload(
    url: str,
    *,
    declared_bytes: int,
    interval_s: float | None,
    chunk_bytes: int = 1,
    first_bytes: int = 0,
) -> Outcome:
    """POST a multipart upload declaring ``declared_bytes`` of file, send ``first_bytes`` of
    it at once, then ``chunk_bytes`` every ``interval_s`` (``None``: nothing more, a stalled
    client) until the server answers or hangs up."""
    parts = urlsplit(url)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    length = len(_PROLOGUE) + declared_bytes + len(f"\r\n--{BOUNDARY}--\r\n")
    writer.write(
        (
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
        + _PROLOGUE
        + b"\0" * first_bytes
    )
    sent = first_bytes

    async def trickle() -> None:
        nonlocal sent
        while interval_s is not None and sent + chunk_bytes <= declared_bytes:
            await asyncio.sleep(interval_s)
            writer.write(b"\0" * chunk_bytes)
            await writer.drain()
            sent += chunk_bytes
        await asyncio.Event().wait()  # then hold the connection open, sending nothing

    sender = asyncio.ensure_future(trickle())
    try:
        status, response_headers, body = await _read_response(reader)
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
        writer.close()
    return Outcome(status, time.perf_counter() - started, response_headers, body, sent)


class IdleConnection:
    """A keep-alive connection that made one request and now sits idle, as browsers leave
    them; :meth:`closed_by_server` tells whether the server has hung up since."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, url: str) -> IdleConnection:
        """Connect, GET ``url`` (a small answer), read the whole answer, keep the connection."""
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        writer.write(f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode())
        status, _, _ = await _read_response(reader)
        if status != 200:
            writer.close()
            raise ConnectionError(f"GET {url} answered {status}")
        return cls(reader, writer)

    def closed_by_server(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()
