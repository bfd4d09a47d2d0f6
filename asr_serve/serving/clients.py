"""Who sent a request, and the limits each such client has on one ingress replica.

A client is its API key when keys are on (named by the key's digest), else its address
(:mod:`asr_serve.api.clients` tells which). The name travels with each of its items to the
models' replicas, which serve waiting clients in turn (:mod:`asr_serve.engines.fair`); with
keys on it also scopes the client's cached results (:mod:`asr_serve.serving.cache`).

:class:`ClientLimits` holds the optional limits of ``clients`` in the config: requests in
progress, live sessions open and audio seconds a minute, per client. They are counted per
ingress replica (no state is shared between replicas), so with several ingress replicas a
client may get up to that many times each limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from asr_serve.config import ClientsConfig
from asr_serve.errors import ClientLimitError

#: Clients whose audio buckets and hold times are kept before the idle ones are dropped.
_CLIENTS_KEPT = 1024


@dataclass(frozen=True)
class Client:
    #: ``key:<digest>`` or ``addr:<address>``: the client's share, limits and log name.
    id: str
    #: Named by an API key: a tenant, whose cached results are its own.
    keyed: bool = False

    def cache_scope(self, shared: bool) -> str:
        """The cache's partition for this client: its own with keys on, unless ``shared``."""
        return self.id if self.keyed and not shared else ""


#: A client the ingress does not know (its own calls, tests in process).
ANONYMOUS = Client("")


@dataclass
class _Held:
    """A client's places in use, and how long its places were held lately."""

    count: int = 0
    #: Smoothed time a place was held: when a client at its limit may expect one free.
    mean_s: float = 1.0


class Slot:
    """One counted place (a request in progress, a session open); :meth:`release` gives it
    back, once, however often it is called."""

    #: Weight of the newest hold in a client's smoothed hold time.
    SMOOTHING = 0.3

    def __init__(self, held: dict[str, _Held], client: str, clock: Callable[[], float]) -> None:
        self._held = held
        self._client: str | None = client
        self._clock = clock
        self._since = clock()
        held.setdefault(client, _Held()).count += 1

    def release(self) -> None:
        if self._client is None:
            return
        held = self._held[self._client]
        held.count -= 1
        held.mean_s += self.SMOOTHING * (self._clock() - self._since - held.mean_s)
        if len(self._held) > _CLIENTS_KEPT:  # forget the idle ones, their hold times too
            for client in [c for c, h in self._held.items() if not h.count]:
                del self._held[client]
        self._client = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


class _Bucket:
    """Audio seconds a client may still send now; refills at the limit per minute."""

    def __init__(self, capacity: float, now: float) -> None:
        self.capacity = capacity
        self.level = capacity
        self.at = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.at) * self.capacity / 60)
        self.at = now


class ClientLimits:
    """The per-client limits of one ingress replica. Plain, single-threaded (event loop)."""

    def __init__(self, config: ClientsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        self._requests: dict[str, _Held] = {}
        self._sessions: dict[str, _Held] = {}
        self._audio: dict[str, _Bucket] = {}

    def request(self, client: str) -> Slot:
        """A request in progress for ``client``; 429 past ``max_concurrent_requests``."""
        return self._slot(self._requests, client, self.config.max_concurrent_requests, "requests")

    def session(self, client: str) -> Slot:
        """A live session open for ``client``; 429 past ``max_live_sessions``."""
        return self._slot(self._sessions, client, self.config.max_live_sessions, "live sessions")

    def take_audio(self, client: str, seconds: float) -> None:
        """Count ``seconds`` of ``client``'s audio against ``max_audio_s_per_minute``;
        429 with the wait until they fit, and nothing counted, past it."""
        limit = self.config.max_audio_s_per_minute
        if limit is None:
            return
        now = self._clock()
        bucket = self._audio.get(client)
        if bucket is None:
            self._forget_full(now)
            bucket = self._audio[client] = _Bucket(limit, now)
        bucket.refill(now)
        if seconds > bucket.level and bucket.level < bucket.capacity:
            wait_s = (min(seconds, bucket.capacity) - bucket.level) * 60 / limit
            raise ClientLimitError(
                f"this client may send {limit:g} s of audio a minute; {seconds:.1f} s more "
                f"fit in {math.ceil(wait_s)} s",
                retry_after_s=wait_s,
            )
        bucket.level -= seconds

    def _slot(self, places: dict[str, _Held], client: str, limit: int | None, what: str) -> Slot:
        """A place, or 429 with a Retry-After of how long the client's places were held lately:
        a client that keeps its limit busy is told to come back when one is likely free, not
        invited to try again every second."""
        held = places.get(client)
        if limit is not None and held is not None and held.count >= limit:
            raise ClientLimitError(
                f"this client has {limit} {what} in progress, its limit; retry when one ends",
                retry_after_s=max(1.0, held.mean_s),
            )
        return Slot(places, client, self._clock)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: a full bucket is the same as none."""
        if len(self._audio) <= _CLIENTS_KEPT:
            return
        for client, bucket in list(self._audio.items()):
            bucket.refill(now)
            if bucket.level >= bucket.capacity:
                del self._audio[client]
