"""What a connection has to send its client: bounded in bytes, handed on at a bounded rate.

The session core emits from its own tasks and must never wait on a socket, so messages wait
here and one writer hands them to the transport. Behind Serve's proxy the transport never
pushes back: every message handed to the ASGI ``send`` is queued at once by the replica
and again by the proxy, however long the client takes to read it. So the outbox

- hands messages on at ``rate_bytes_s`` at most (a token bucket holding a second's worth,
  so ordinary traffic never waits), which bounds what a client that stops reading can park
  in the replica and the proxy before the proxy's keepalive pings give it up;
- holds at most ``max_bytes`` waiting; the message that would go past it marks the outbox
  overflowed, drops what waits, and tells the connection, which closes (4002). Where the
  transport does push back (uvicorn serving the replica directly), a client that does not
  read fills the outbox the same way.

Client libraries bound one socket's queue the same two ways: ``websockets``' ``write_limit``
makes ``send`` wait past a high-water mark, okhttp's WebSocket closes past 16 MiB queued.
Here the bound sits where the connection's own bytes are still visible: in the replica,
before Serve's queues.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


def encoded_size(text: str) -> int:
    """Bytes ``text`` takes as UTF-8 (what goes on the wire), without encoding ASCII."""
    return len(text) if text.isascii() else len(text.encode())


class Outbox:
    """One connection's messages waiting for its client; one writer calls :meth:`get`."""

    def __init__(
        self, max_bytes: int, rate_bytes_s: float, *, on_overflow: Callable[[], None]
    ) -> None:
        self.max_bytes = max_bytes
        self.rate_bytes_s = rate_bytes_s
        self._on_overflow = on_overflow
        self._messages: deque[tuple[str, int]] = deque()
        self._ready = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._tokens = float(rate_bytes_s)  # a second's worth, full at first
        self._filled_at = self._loop.time()
        self._closed = False
        #: Bytes waiting, the message being paced included.
        self.waiting_bytes = 0
        #: The client fell ``max_bytes`` behind; nothing more is taken or handed on.
        self.overflowed = False

    def put(self, text: str) -> None:
        """Queue one message; past ``max_bytes`` waiting, overflow instead."""
        if self.overflowed or self._closed:
            return
        size = encoded_size(text)
        if self.waiting_bytes + size > self.max_bytes:
            self.overflowed = True
            self._messages.clear()
            self.waiting_bytes = 0
            self._ready.set()
            self._on_overflow()
            return
        self._messages.append((text, size))
        self.waiting_bytes += size
        self._ready.set()

    def close(self) -> None:
        """Nothing more comes: :meth:`get` returns what waits, then ``None``."""
        self._closed = True
        self._ready.set()

    async def get(self) -> str | None:
        """The next message once the rate allows it; ``None`` once closed and empty, or
        overflowed."""
        while not self._messages:
            if self._closed or self.overflowed:
                return None
            self._ready.clear()
            await self._ready.wait()
        text, size = self._messages[0]
        await self._pace(size)
        if self.overflowed:
            return None
        self._messages.popleft()
        self.waiting_bytes -= size
        return text

    async def _pace(self, size: int) -> None:
        """Wait until the bucket holds ``size`` bytes (a second's worth for a larger
        message, which then leaves it in debt), and take them."""
        need = min(size, self.rate_bytes_s)
        self._refill()
        if self._tokens < need:
            await asyncio.sleep((need - self._tokens) / self.rate_bytes_s)
            self._refill()
        self._tokens -= size

    def _refill(self) -> None:
        now = self._loop.time()
        elapsed = now - self._filled_at
        self._tokens = min(self.rate_bytes_s, self._tokens + elapsed * self.rate_bytes_s)
        self._filled_at = now
