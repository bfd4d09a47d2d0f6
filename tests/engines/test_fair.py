"""The fair queue without Ray: who goes into each batch, what a client waits, what it holds.

:class:`_Replica` plays the ASR replica around the queue as ``@serve.batch`` does: items
whose turn came are collected and run as one batch, one batch at a time.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from asr_serve.engines.fair import FairQueue, Ticket


class _Replica:
    """Items enter the queue; released ones are run together, ``batch_s`` per batch."""

    def __init__(self, max_batch_size: int = 4, batch_s: float = 0.02) -> None:
        self.queue = FairQueue(max_batch_size)
        self.batch_s = batch_s
        self.batches: list[list[str]] = []
        self._arrived: list[tuple[Ticket, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._runner = asyncio.ensure_future(self._run())

    async def item(self, client: str, seconds: float = 1.0, cost: int = 1) -> Ticket:
        ticket = self.queue.enter(client, seconds, cost)
        try:
            await self.queue.turn(ticket, None)
            done = asyncio.get_running_loop().create_future()
            self._arrived.append((ticket, done))
            self._wake.set()
            await done
            return ticket
        finally:
            self.queue.leave(ticket)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(0)  # the others released with it arrive too
            self._wake.clear()
            batch, self._arrived = self._arrived, []
            with self.queue.running([t for t, _ in batch]):
                self.batches.append([t.client for t, _ in batch])
                await asyncio.sleep(self.batch_s)
            for _, done in batch:
                done.set_result(None)

    def close(self) -> None:
        self._runner.cancel()


def test_a_busy_engine_holds_items_and_the_next_batch_takes_them_all() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=4, batch_s=0.1)
        first = asyncio.ensure_future(replica.item("a"))
        await asyncio.sleep(0.02)  # its batch is running
        later = [asyncio.ensure_future(replica.item(c)) for c in "bcdef"]
        await asyncio.gather(first, *later)
        replica.close()
        # While "a" ran the rest waited; then a full batch of four, then the fifth.
        assert [len(b) for b in replica.batches] == [1, 4, 1]

    asyncio.run(scenario())


def test_one_request_goes_ahead_of_a_flooding_client_s_backlog() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=4)
        flood = [asyncio.ensure_future(replica.item("flood")) for _ in range(40)]
        await asyncio.sleep(0)
        normal = asyncio.ensure_future(replica.item("normal"))
        await asyncio.gather(*flood, normal)
        replica.close()
        where = next(i for i, b in enumerate(replica.batches) if "normal" in b)
        assert where <= 1, replica.batches  # FIFO would have put it in the 11th batch

    asyncio.run(scenario())


def test_clients_waiting_together_get_equal_audio_whatever_their_item_lengths() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=2)
        short = [asyncio.ensure_future(replica.item("short", 1.0)) for _ in range(40)]
        long = [asyncio.ensure_future(replica.item("long", 4.0)) for _ in range(10)]
        served: Counter[str] = Counter()
        await asyncio.sleep(0.2)  # a few batches in, both still backlogged
        for batch in replica.batches:
            for client in batch:
                served[client] += 1.0 if client == "short" else 4.0
        await asyncio.gather(*short, *long)
        replica.close()
        assert served["long"] == pytest.approx(served["short"], rel=0.35), served

    asyncio.run(scenario())


def test_work_ahead_counts_what_runs_and_what_is_tagged_before_the_client() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=1, batch_s=10)
        queue = replica.queue
        running = asyncio.ensure_future(replica.item("flood", 5.0))
        await asyncio.sleep(0.01)
        backlog = [asyncio.ensure_future(replica.item("flood", 5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        # The flooder's next item waits for all of its own; a new client's only for the one
        # running: the flooder's backlog is tagged after it.
        assert queue.work_ahead("flood") == pytest.approx(20.0)
        assert queue.work_ahead("new") == pytest.approx(5.0)
        assert queue.queued_s == pytest.approx(20.0) and queue.clients == 1
        for task in [running, *backlog]:
            task.cancel()
        await asyncio.gather(running, *backlog, return_exceptions=True)
        replica.close()
        assert queue.queued_s == 0.0 and queue.clients == 0

    asyncio.run(scenario())


def test_a_client_over_its_share_is_the_one_that_holds_more_than_the_mean() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=1, batch_s=10)
        queue = replica.queue
        tasks = [asyncio.ensure_future(replica.item("flood", 3.0)) for _ in range(5)]
        tasks += [asyncio.ensure_future(replica.item(c, 3.0)) for c in ("a", "b")]
        await asyncio.sleep(0.01)
        assert queue.over_share("flood")
        assert not queue.over_share("a") and not queue.over_share("nobody")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        replica.close()

    asyncio.run(scenario())


def test_a_lone_client_is_never_over_its_share() -> None:
    async def scenario() -> None:
        queue = FairQueue(4)
        tickets = [queue.enter("only", 5.0, 1) for _ in range(10)]
        assert not queue.over_share("only")
        for ticket in tickets:
            queue.leave(ticket)

    asyncio.run(scenario())


def test_an_item_that_times_out_leaves_and_gives_its_client_s_tag_back() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=1, batch_s=10)
        queue = replica.queue
        running = asyncio.ensure_future(replica.item("a", 2.0))
        await asyncio.sleep(0.01)
        ticket = queue.enter("b", 2.0, 1)
        before = queue.work_ahead("b")
        assert not await queue.turn(ticket, 0.05)  # the engine stayed busy
        queue.leave(ticket)  # leaving twice is harmless
        assert queue.work_ahead("b") < before  # its place is gone, its tag back
        assert queue.queued_s == pytest.approx(2.0)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        replica.close()

    asyncio.run(scenario())


def test_partials_go_in_only_behind_waiting_requests_and_give_up_after_their_wait() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=1, batch_s=0.1)
        queue = replica.queue
        order: list[str] = []

        async def partial(name: str, wait_s: float) -> None:
            ticket = await queue.partial("p", 1.0, 1, wait_s)
            order.append(name if ticket is not None else f"{name}-shed")
            if ticket is not None:
                queue.leave(ticket)

        async def request(name: str) -> None:
            await replica.item(name)
            order.append(name)

        busy = asyncio.ensure_future(replica.item("first"))
        await asyncio.sleep(0.01)
        # The partial waits first, yet the requests that queue after it go in first.
        waiting = [asyncio.ensure_future(partial("p", 5.0))]
        await asyncio.sleep(0.01)
        waiting += [asyncio.ensure_future(request(f"r{i}")) for i in range(2)]
        waiting.append(asyncio.ensure_future(partial("late", 0.05)))
        await asyncio.gather(busy, *waiting)
        replica.close()
        assert order == ["late-shed", "r0", "r1", "p"]

    asyncio.run(scenario())


def test_the_queue_releases_again_after_a_failed_batch() -> None:
    async def scenario() -> None:
        queue = FairQueue(1)
        first = queue.enter("a", 1.0, 1)
        assert await queue.turn(first, 0.1)
        second = queue.enter("a", 1.0, 1)
        with pytest.raises(RuntimeError), queue.running([first]):
            raise RuntimeError("engine failed")
        queue.leave(first)
        assert await queue.turn(second, 0.1)
        queue.leave(second)

    asyncio.run(scenario())


def test_an_idle_queue_forgets_who_had_more() -> None:
    async def scenario() -> None:
        queue = FairQueue(1)
        for _ in range(3):  # "a" runs far ahead of the virtual time, then goes idle
            queue.leave(queue.enter("a", 10.0, 1))
        assert queue.work_ahead("a") == 0.0 and queue.clients == 0
        ticket = queue.enter("a", 1.0, 1)
        assert ticket.start == 0.0
        queue.leave(ticket)

    asyncio.run(scenario())


def test_engine_time_is_shared_out_by_audio_and_timestamps_are_kept() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=4, batch_s=0.05)
        a, b = await asyncio.gather(replica.item("a", 3.0), replica.item("b", 1.0))
        replica.close()
        model_s = replica.queue.model_s
        assert model_s["a"] == pytest.approx(3 * model_s["b"], rel=1e-6)
        assert 0.04 < model_s["a"] + model_s["b"] < 0.5
        for ticket in (a, b):
            assert ticket.released_at is not None and ticket.started_at is not None
            assert ticket.enqueued_at <= ticket.released_at <= ticket.started_at
        assert b.finish - b.start == 1.0  # its work: its audio, or the least an item costs

    asyncio.run(scenario())


def test_an_item_costing_more_than_a_batch_still_runs_alone() -> None:
    async def scenario() -> None:
        replica = _Replica(max_batch_size=4)
        await asyncio.gather(replica.item("a", 100.0, cost=10), replica.item("b", 1.0))
        replica.close()
        assert sorted(map(len, replica.batches)) == [1, 1]

    asyncio.run(scenario())


def test_an_item_is_as_much_work_as_the_engine_s_least_cost_whatever_its_audio() -> None:
    """Whisper encodes every clip as a 30 s window: a flood of 0.1 s commits is as much work
    as as many 3 s requests, and the flooder, not the client with longer audio, holds more."""

    async def scenario() -> None:
        queue = FairQueue(4, min_item_s=30.0)
        flood = [queue.enter("flood", 0.1, 1) for _ in range(10)]
        normal = queue.enter("normal", 2.9, 1)
        assert queue.over_share("flood") and not queue.over_share("normal")
        assert queue.queued_s == pytest.approx(11 * 30.0)
        for ticket in [*flood, normal]:
            queue.leave(ticket)

    asyncio.run(scenario())
