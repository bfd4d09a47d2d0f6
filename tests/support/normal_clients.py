"""Ordinary clients measured beside an abusive one: file requests, one after another, from a
thread of their own, so what the abusive client does on the test's event loop never delays
them on the client side.

An abuse test runs its case inside :class:`NormalClients` and compares what they saw with
what the same clients see alone (:meth:`NormalClients.alone`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from types import TracebackType

import httpx
import numpy as np


def p95(values: list[float]) -> float:
    """The 95th percentile (nearest rank): with few values, close to the largest."""
    ordered = sorted(values)
    return ordered[max(0, int(np.ceil(0.95 * len(ordered))) - 1)]


class NormalClients:
    """``clients`` threads, each posting ``wav`` to ``url`` until the block ends; at least
    ``min_requests`` are done in all before it does."""

    def __init__(
        self,
        url: str,
        wav: bytes,
        *,
        clients: int = 1,
        min_requests: int = 5,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.wav = wav
        self.min_requests = min_requests
        self.data = dict(data or {})
        self.headers = dict(headers or {})
        #: ``(status, seconds)`` per request, in the order they ended.
        self.results: list[tuple[int, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    @classmethod
    def alone(cls, url: str, wav: bytes, requests: int, **kwargs: object) -> list[float]:
        """Latencies of ``requests`` sequential requests with nothing else going on."""
        clients = cls(url, wav, **kwargs)  # type: ignore[arg-type]
        with httpx.Client(timeout=60) as http:
            for _ in range(requests):
                clients._post(http)
        assert {status for status, _ in clients.results} == {200}, clients.results
        return clients.latencies

    def _post(self, http: httpx.Client) -> None:
        started = time.perf_counter()
        resp = http.post(
            self.url, files={"file": ("a.wav", self.wav)}, data=self.data, headers=self.headers
        )
        with self._lock:
            self.results.append((resp.status_code, time.perf_counter() - started))

    def _run(self) -> None:
        with httpx.Client(timeout=60) as http:
            while not self._stop.is_set() or len(self.results) < self.min_requests:
                self._post(http)

    @property
    def latencies(self) -> list[float]:
        return [seconds for _, seconds in self.results]

    @property
    def statuses(self) -> set[int]:
        return {status for status, _ in self.results}

    def __enter__(self) -> NormalClients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
