"""A connection's outbox: bounded in bytes, paced in rate, overflowing once."""

from __future__ import annotations

import asyncio
import time

import pytest

from asr_serve.live.protocols.outbox import Outbox, encoded_size

pytestmark = pytest.mark.anyio


def test_sizes_are_utf8_bytes() -> None:
    assert encoded_size("abc") == 3
    assert encoded_size("热词") == 6


async def _drain(outbox: Outbox) -> list[str]:
    got = []
    while (text := await outbox.get()) is not None:
        got.append(text)
    return got


async def test_messages_go_out_in_order_then_none_once_closed() -> None:
    outbox = Outbox(1000, 10_000, on_overflow=lambda: None)
    for text in ("a", "b", "热"):
        outbox.put(text)
    assert outbox.waiting_bytes == 5
    outbox.close()
    outbox.put("after close")  # ignored
    assert await _drain(outbox) == ["a", "b", "热"]
    assert outbox.waiting_bytes == 0 and not outbox.overflowed


async def test_the_message_past_the_budget_overflows_it_once() -> None:
    overflows: list[int] = []
    outbox = Outbox(100, 10_000, on_overflow=lambda: overflows.append(1))
    outbox.put("x" * 60)
    outbox.put("y" * 40)  # exactly at the bound: taken
    assert outbox.waiting_bytes == 100 and not overflows
    outbox.put("z")
    assert outbox.overflowed and overflows == [1] and outbox.waiting_bytes == 0
    outbox.put("more")  # nothing more is taken, and the callback is not called again
    assert overflows == [1]
    assert await outbox.get() is None  # what waited is dropped


async def test_a_second_s_worth_goes_at_once_and_more_at_the_rate() -> None:
    rate = 20_000
    outbox = Outbox(10 * rate, rate, on_overflow=lambda: None)
    for _ in range(10):
        outbox.put("x" * (rate // 10))  # one second's worth: no wait
    outbox.close()
    started = time.monotonic()
    await _drain(outbox)
    assert time.monotonic() - started < 0.1
    outbox = Outbox(10 * rate, rate, on_overflow=lambda: None)
    for _ in range(20):
        outbox.put("x" * (rate // 10))  # two seconds' worth: the second waits a second
    outbox.close()
    started = time.monotonic()
    await _drain(outbox)
    assert 0.9 <= time.monotonic() - started < 1.5


async def test_a_message_larger_than_a_second_s_worth_still_goes() -> None:
    outbox = Outbox(100_000, 10_000, on_overflow=lambda: None)
    outbox.put("x" * 30_000)
    outbox.put("y")
    outbox.close()
    started = time.monotonic()
    assert [len(t) for t in await _drain(outbox)] == [30_000, 1]
    assert 1.5 <= time.monotonic() - started < 3  # the large one left the bucket in debt


async def test_an_overflow_while_a_message_is_paced_stops_the_writer() -> None:
    outbox = Outbox(30_000, 10_000, on_overflow=lambda: None)
    outbox.put("x" * 10_000)
    outbox.put("y" * 10_000)
    assert await outbox.get() == "x" * 10_000
    waiting = asyncio.create_task(outbox.get())  # paced: a second to wait
    await asyncio.sleep(0.1)
    outbox.put("z" * 25_000)
    assert await waiting is None
