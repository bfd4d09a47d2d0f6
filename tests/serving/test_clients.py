"""Per-client limits on one ingress replica, and whose results a client may be answered from."""

from __future__ import annotations

import numpy as np
import pytest

from asr_serve.config import ClientsConfig, ModelConfig
from asr_serve.engines.base import TranscribeOptions
from asr_serve.errors import RateLimitError
from asr_serve.serving.cache import cache_key
from asr_serve.serving.clients import Client, ClientLimits


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_no_limits_by_default() -> None:
    limits = ClientLimits(ClientsConfig())
    slots = [limits.request("a") for _ in range(1000)] + [limits.session("a") for _ in range(99)]
    limits.take_audio("a", 1e9)
    for slot in slots:
        slot.release()


def test_requests_in_progress_are_counted_per_client_and_given_back_once() -> None:
    limits = ClientLimits(ClientsConfig(max_concurrent_requests=2))
    first, second = limits.request("a"), limits.request("a")
    with pytest.raises(RateLimitError, match="2 requests in progress") as refused:
        limits.request("a")
    assert refused.value.status_code == 429 and refused.value.retry_after_s >= 1
    limits.request("b").release()  # another client is not held back
    first.release()
    first.release()  # a second release gives nothing more back
    with limits.request("a"), pytest.raises(RateLimitError):
        limits.request("a")
    second.release()


def test_a_client_at_its_limit_is_told_to_come_back_when_a_request_is_likely_done() -> None:
    clock = _Clock()
    limits = ClientLimits(ClientsConfig(max_concurrent_requests=1), clock)
    for _ in range(20):  # its requests take 4 s each
        with limits.request("a"):
            clock.now += 4.0
    with limits.request("a"), pytest.raises(RateLimitError) as refused:
        limits.request("a")
    assert refused.value.retry_after_s == pytest.approx(4.0, rel=0.01)
    with limits.request("b"), pytest.raises(RateLimitError) as quick:
        limits.request("b")  # nothing known of "b": a second
    assert quick.value.retry_after_s == 1.0


def test_live_sessions_have_a_limit_of_their_own() -> None:
    limits = ClientLimits(ClientsConfig(max_live_sessions=1, max_concurrent_requests=1))
    with (
        limits.session("a"),
        limits.request("a"),
        pytest.raises(RateLimitError, match="live sessions"),
    ):
        limits.session("a")


def test_audio_a_minute_is_a_bucket_that_refills_as_time_passes() -> None:
    clock = _Clock()
    limits = ClientLimits(ClientsConfig(max_audio_s_per_minute=60.0), clock)
    limits.take_audio("a", 50.0)
    with pytest.raises(RateLimitError) as refused:
        limits.take_audio("a", 20.0)  # 10 s left; 10 s more come in 10 s
    assert refused.value.retry_after_s == pytest.approx(10.0)
    limits.take_audio("b", 60.0)  # every client has its own
    clock.now += 10.0
    limits.take_audio("a", 20.0)


def test_one_file_longer_than_a_minute_s_audio_passes_when_the_bucket_is_full() -> None:
    clock = _Clock()
    limits = ClientLimits(ClientsConfig(max_audio_s_per_minute=60.0), clock)
    limits.take_audio("a", 600.0)  # a full bucket takes it, and owes the rest
    clock.now += 60.0
    with pytest.raises(RateLimitError):
        limits.take_audio("a", 1.0)


def test_a_key_s_results_are_its_own_unless_the_cache_is_shared() -> None:
    model = ModelConfig(name="m", engine="funasr", model="x")
    audio = np.zeros(1600, np.float32)

    def key(client: Client, shared: bool = False) -> str:
        return cache_key("p:", model, audio, TranscribeOptions(), client.cache_scope(shared))

    a, b = Client("key:a", keyed=True), Client("key:b", keyed=True)
    assert key(a) != key(b) and key(a) == key(Client("key:a", keyed=True))
    assert key(a, shared=True) == key(b, shared=True)
    # With keys off every client is anonymous to the cache: one scope.
    assert key(Client("addr:10.0.0.1")) == key(Client("addr:10.0.0.2"))
