"""Admission by time: an item joins a replica's queue only if its wait would be short enough.

A queue bounded by a count lets an accepted request wait as long as that count of items
takes. Here the replica knows the work that would be done before a new item (the fair
queue's order: :meth:`asr_serve.engines.fair.FairQueue.work_ahead`; an item's work is its
audio, or the engine's least cost of an item if more) and the speed its engine has shown
(work seconds per wall second of its batches, smoothed, seeded by warm-up; once it has run
full batches, the speed of those if higher: behind a queue long enough to matter, batches
are full, and an engine that batches well does more per second in a full batch than in the
small ones a light load makes); a new item is admitted when that work, at that speed, is
done within ``max_queue_wait_s``. Otherwise it
is refused at once with a Retry-After of the time until it would be admitted: 429
``rate_limit_exceeded`` for a client that holds more than its share of the queue (the
others still get in), 503 ``overloaded`` when every client does its share and the engine
is simply full. An admitted item that has waited
``max_queue_wait_s`` after all (others came before it in the fair order, or the engine
slowed) is refused the same way rather than served later (:meth:`QueueAdmission.expired`),
so an accepted request never waits longer than the bound.
"""

from __future__ import annotations

from asr_serve.engines.fair import FairQueue, Ticket
from asr_serve.errors import OverloadedError, RateLimitError, RetryLaterError


class QueueAdmission:
    """One replica's engine speed and the refusals it implies. Plain, single-threaded."""

    #: Weight of the newest batch in the smoothed speed: a few batches follow a change of
    #: load or of clip lengths, one odd batch does not swing it.
    SMOOTHING = 0.3

    def __init__(self, speed: float) -> None:
        #: Seconds of work (:meth:`asr_serve.engines.fair.FairQueue.work_s`) the engine does
        #: per wall second, over all its batches, and over its full ones (once it ran any).
        self.speed = speed
        self.full_speed: float | None = None

    @classmethod
    def from_warmup(cls, work_s: float, wall_s: float) -> QueueAdmission:
        """Seeded by the warm-up batch: slow (first-call costs), so admission starts cautious
        and the real batches correct it."""
        return cls(speed=work_s / max(wall_s, 1e-3))

    def estimated_wait_s(self, work_ahead_s: float) -> float:
        """How long an item waits for ``work_ahead_s`` of work done before it."""
        return work_ahead_s / max(self.speed, self.full_speed or 0.0)

    def refusal(
        self, work_ahead_s: float, max_wait_s: float, *, over_share: bool
    ) -> RetryLaterError | None:
        """The refusal for a new item if its wait would exceed ``max_wait_s``, else ``None``;
        ``over_share``: its client holds more than its share of the queue."""
        wait = self.estimated_wait_s(work_ahead_s)
        if wait <= max_wait_s:
            return None
        retry_after_s = wait - max_wait_s
        if over_share:
            return RateLimitError(
                f"this client's requests already hold about {wait:.0f} s of the model's "
                f"queue, more than its share, over the {max_wait_s:g} s bound; retry shortly",
                retry_after_s=retry_after_s,
            )
        return OverloadedError(
            f"the model's queue holds about {wait:.0f} s of work, over its "
            f"{max_wait_s:g} s bound; retry shortly",
            retry_after_s=retry_after_s,
        )

    @staticmethod
    def expired(max_wait_s: float, *, over_share: bool) -> RetryLaterError:
        """The refusal for an admitted item that has waited ``max_wait_s`` without its turn."""
        message = (
            f"waited {max_wait_s:g} s for the model, its bound, while "
            + (
                "this client's other requests held more than its share"
                if over_share
                else "the model was busy"
            )
            + "; retry shortly"
        )
        cls = RateLimitError if over_share else OverloadedError
        return cls(message, retry_after_s=1.0)

    async def admitted(
        self,
        queue: FairQueue,
        client: str,
        seconds: float,
        cost: int,
        *,
        max_wait_s: float,
        check: bool = True,
    ) -> Ticket | RetryLaterError:
        """Admit a request's item into ``queue`` and wait for its turn: its released ticket
        (leave it when done), or the refusal. Without ``check`` (a later piece of a request
        whose first piece was admitted) it is neither refused nor timed out: a file is not
        refused halfway."""
        if check:
            refusal = self.refusal(
                queue.work_ahead(client), max_wait_s, over_share=queue.over_share(client)
            )
            if refusal is not None:
                return refusal
        ticket = queue.enter(client, seconds, cost)
        released = False
        try:
            released = await queue.turn(ticket, max_wait_s if check else None)
            if released:
                return ticket
            return self.expired(max_wait_s, over_share=queue.over_share(client))
        finally:
            if not released:
                queue.leave(ticket)

    def observe_batch(self, work_s: float, wall_s: float, *, full: bool = False) -> None:
        """Fold one batch's speed into the estimates; ``full``: it had ``max_batch_size``."""
        if wall_s <= 0 or work_s <= 0:
            return
        speed = work_s / wall_s
        self.speed += self.SMOOTHING * (speed - self.speed)
        if full:
            last = speed if self.full_speed is None else self.full_speed
            self.full_speed = last + self.SMOOTHING * (speed - last)
