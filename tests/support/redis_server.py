"""A throwaway ``redis-server`` for tests: a free local port, no persistence, killable.

The result cache is tested against the real server (Debian's ``redis-server``), including
what happens when it dies or stops answering mid-test.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import redis

from devtools.net import free_port

#: Local only, nothing on disk, and the size bound of a production cache: LRU eviction at
#: ``maxmemory``.
_SETTINGS = [
    *("--bind", "127.0.0.1", "--save", "", "--appendonly", "no"),
    *("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru"),
]


class RedisServer:
    """One ``redis-server`` process; ``start`` again after ``kill`` reuses the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is missing: `make system-deps` installs it")
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), *_SETTINGS], stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.client().ping()
                return self
            except redis.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL, as a crashed server: clients see their connections reset."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing answers (a slow Redis)."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)
