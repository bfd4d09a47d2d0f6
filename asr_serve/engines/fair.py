"""A replica's waiting items, served client by client: start-time fair queueing by work.

First come, first served let one client that sends many items at once hold every batch
while everyone else's requests waited behind it. Here each client (the ingress names it:
its API key, else its address) is a flow of its own, and items are served in the order of
their *start tags* (start-time fair queueing, Goyal, Vin and Cheng 1996): an item's tag is
where its client's previous item ends, or the queue's virtual time if that is later, and
each item moves its client's tag on by its *work*: its audio in seconds, or the engine's
``min_item_s`` if more (Whisper encodes every clip as a 30 s window, so there a 0.1 s item
is as much work as a 28 s one). A client with one request in the queue gets it tagged at
the virtual time, ahead of the backlog of a client that sent forty, so every client waiting
gets an equal share of the engine's work, whatever the others send; an idle queue forgets
who had more.

Because the order is the tags', the work done before a new item is known exactly
(:meth:`FairQueue.work_ahead`): admission by time (:mod:`asr_serve.engines.admission`)
asks for it per client, so a client over its share is refused while the others still fit.

Batches: when the engine is free the queue *releases* up to one batch's worth of items
(``max_batch_size``, in the cost units of :func:`asr_serve.engines.batch.item_cost`) in tag
order, and Serve's ``@serve.batch`` forms the batch from them: what it is given is one
batch, so its own first-come order never decides who goes. Items arriving while the engine
is busy wait here, not in Serve's batcher, which starts forming the next batch as soon as
one starts running and would close it ``batch_wait_timeout_s`` later with only what came
in that window; held here, a batch takes the fairest of everything queued meanwhile, and
an idle replica adds only ``batch_wait_timeout_s``. Live partial results are best effort:
one goes in only when no request waits and the batch has room, and gives up after its wait
(the partial policy as a whole: :mod:`asr_serve.live.partials`).

Fairness is per ASR replica: with several replicas, a client's items spread over them and
each replica shares its own engine among the clients it sees.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import heapq
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

#: Clients whose model time :attr:`FairQueue.model_s` keeps, the busiest first.
MODEL_TIME_CLIENTS = 256


class Kind(enum.Enum):
    #: A file's piece or a live final: fair-queued by its client's tag.
    REQUEST = "request"
    #: A live partial result: behind every request, dropped after its wait.
    PARTIAL = "partial"


class _State(enum.Enum):
    WAITING = "waiting"
    RELEASED = "released"  # its turn came: on its way into a batch
    RUNNING = "running"
    GONE = "gone"  # done, expired or cancelled


@dataclass(eq=False)
class Ticket:
    """One item's place in the queue, with the times it passed each stage."""

    client: str
    #: Its audio, or the engine's ``min_item_s`` if more: what it costs the engine.
    work_s: float
    #: Its share of ``max_batch_size`` (:func:`asr_serve.engines.batch.item_cost`).
    cost: int
    kind: Kind
    start: float = 0.0
    finish: float = 0.0
    enqueued_at: float = field(default_factory=time.perf_counter)
    #: When the queue let it go into a batch, and when that batch started running.
    released_at: float | None = None
    started_at: float | None = None
    state: _State = _State.WAITING
    _turn: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


@dataclass
class _Flow:
    """A client's tag and the work it has queued (waiting, released or running)."""

    last_finish: float = 0.0
    queued_s: float = 0.0
    tickets: int = 0


class FairQueue:
    """One replica's queue in front of its engine. Plain, single-threaded (event loop)."""

    def __init__(self, max_batch_size: int, min_item_s: float = 1.0) -> None:
        self.max_batch_size = max_batch_size
        #: The least work an item counts as (the engine's ``min_item_s``).
        self.min_item_s = min_item_s
        #: Start tag of the last request released: where a newly active client starts.
        self._virtual = 0.0
        self._flows: dict[str, _Flow] = {}
        self._requests: list[tuple[float, int, Ticket]] = []  # heap by (start, arrival)
        self._partials: collections.deque[Ticket] = collections.deque()
        self._released: set[Ticket] = set()
        self._running: list[Ticket] = []
        self._busy = False
        #: Clients with nothing queued whose tag is still ahead of the virtual time.
        self._idle: set[str] = set()
        self._arrivals = itertools.count()
        #: Engine seconds spent on each client's items, shared out by work within a batch.
        self.model_s: collections.Counter[str] = collections.Counter()

    # What admission asks.

    def work_s(self, seconds: float) -> float:
        """An item's work: its audio, or ``min_item_s`` if more."""
        return max(seconds, self.min_item_s)

    def work_ahead(self, client: str) -> float:
        """Work the engine would do before a new request of ``client``: what is released or
        running, and every waiting request tagged before it."""
        flow = self._flows.get(client)
        start = max(self._virtual, flow.last_finish if flow else 0.0)
        ahead = sum(t.work_s for t in self._released) + sum(t.work_s for t in self._running)
        for tag, _, ticket in self._requests:
            if tag <= start and ticket.state is _State.WAITING:
                ahead += ticket.work_s
        return ahead

    def over_share(self, client: str) -> bool:
        """Whether ``client`` holds more queued work than an equal share of what the
        clients with queued items hold together."""
        flow = self._flows.get(client)
        if flow is None or not flow.tickets:
            return False
        holding = [f.queued_s for f in self._flows.values() if f.tickets]
        return flow.queued_s > sum(holding) / len(holding) + 1e-9

    @property
    def queued_s(self) -> float:
        """Work admitted and not finished, all clients together."""
        return sum(f.queued_s for f in self._flows.values())

    @property
    def clients(self) -> int:
        """Clients with an item in the queue or in the engine."""
        return sum(1 for f in self._flows.values() if f.tickets)

    # An item's way through.

    def enter(self, client: str, seconds: float, cost: int, kind: Kind = Kind.REQUEST) -> Ticket:
        """Queue an item; await :meth:`turn`, then call :meth:`leave` whatever happens."""
        ticket = Ticket(
            client=client,
            work_s=self.work_s(seconds),
            cost=min(cost, self.max_batch_size),
            kind=kind,
        )
        flow = self._flows.setdefault(client, _Flow())
        self._idle.discard(client)
        flow.queued_s += ticket.work_s
        flow.tickets += 1
        if kind is Kind.REQUEST:
            ticket.start = max(self._virtual, flow.last_finish)
            ticket.finish = ticket.start + ticket.work_s
            flow.last_finish = ticket.finish
            heapq.heappush(self._requests, (ticket.start, next(self._arrivals), ticket))
        else:
            self._partials.append(ticket)
        self._release()
        return ticket

    async def partial(
        self, client: str, seconds: float, cost: int, max_wait_s: float
    ) -> Ticket | None:
        """A live partial's released ticket (leave it when done), or ``None`` if no room
        came behind the requests within ``max_wait_s``."""
        ticket = self.enter(client, seconds, cost, Kind.PARTIAL)
        released = False
        try:
            released = await self.turn(ticket, max_wait_s)
        finally:
            if not released:
                self.leave(ticket)
        return ticket if released else None

    async def turn(self, ticket: Ticket, timeout_s: float | None) -> bool:
        """Wait until the ticket is released into a batch: ``True``; ``False`` if that did
        not happen within ``timeout_s`` (it still waits: leave it)."""
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(ticket._turn)
        except TimeoutError:
            return ticket.state is not _State.WAITING  # released just as the time ran out
        return True

    def leave(self, ticket: Ticket) -> None:
        """The item is done, expired or cancelled: give its place and work back."""
        if ticket.state is _State.GONE:
            return
        if ticket.state is _State.WAITING:
            if ticket.kind is Kind.REQUEST:
                flow = self._flows[ticket.client]
                if flow.last_finish == ticket.finish:  # its newest: the client's tag goes back
                    flow.last_finish = ticket.start
            else:
                self._partials.remove(ticket)
        self._released.discard(ticket)
        ticket.state = _State.GONE
        flow = self._flows[ticket.client]
        flow.queued_s = max(0.0, flow.queued_s - ticket.work_s)
        flow.tickets -= 1
        if not flow.tickets:
            self._idle.add(ticket.client)
        self._forget_idle()
        self._release()

    @contextlib.contextmanager
    def running(self, tickets: Iterable[Ticket]) -> Iterator[None]:
        """One batch runs on the engine: nothing more is released until it ends."""
        batch = list(tickets)
        started = time.perf_counter()
        self._busy = True
        self._running = batch
        for ticket in batch:
            self._released.discard(ticket)
            if ticket.state is _State.RELEASED:
                ticket.state = _State.RUNNING
            ticket.started_at = started
        try:
            yield
        finally:
            self._charge(batch, time.perf_counter() - started)
            self._busy = False
            self._running = []
            self._release()

    # Inside.

    def _release(self) -> None:
        """Let the next batch's worth in, in tag order, while the engine is free."""
        if self._busy:
            return
        room = self.max_batch_size - sum(t.cost for t in self._released)
        while room > 0:
            ticket = self._next(room)
            if ticket is None:
                return
            room -= ticket.cost
            ticket.state = _State.RELEASED
            ticket.released_at = time.perf_counter()
            self._released.add(ticket)
            ticket._turn.set_result(None)

    def _next(self, room: int) -> Ticket | None:
        """The next ticket to release if it fits ``room``: the request with the earliest
        tag, else (no request waiting) the oldest partial."""
        while self._requests and self._requests[0][2].state is not _State.WAITING:
            heapq.heappop(self._requests)  # left the queue meanwhile
        if self._requests:
            ticket = self._requests[0][2]
            if ticket.cost > room:
                return None
            heapq.heappop(self._requests)
            self._virtual = max(self._virtual, ticket.start)
            return ticket
        if self._partials and self._partials[0].cost <= room:
            return self._partials.popleft()
        return None

    def _forget_idle(self) -> None:
        """Drop idle clients the virtual time has caught up with; once nothing is queued at
        all, every client: no one is ahead of another any more."""
        if len(self._idle) == len(self._flows):
            self._flows.clear()
            self._idle.clear()
            self._requests.clear()  # only tickets that left remain there
            self._virtual = 0.0
            return
        for client in [c for c in self._idle if self._flows[c].last_finish <= self._virtual]:
            del self._flows[client]
            self._idle.discard(client)

    def _charge(self, batch: list[Ticket], wall_s: float) -> None:
        """Share a batch's engine time among its clients by work."""
        work = sum(t.work_s for t in batch) or 1.0
        for ticket in batch:
            self.model_s[ticket.client] += wall_s * ticket.work_s / work
        if len(self.model_s) > 2 * MODEL_TIME_CLIENTS:
            self.model_s = collections.Counter(dict(self.model_s.most_common(MODEL_TIME_CLIENTS)))
