"""Retry a downstream call once when the replica serving it died mid-request.

Transcription is idempotent, so a request that was in flight on a decoder or ASR replica
that crashed (or was killed) is sent again; Serve routes the retry to a live replica, or
queues it until the restarted one is up. A second death in a row is a 503, not a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray.exceptions import RayActorError

from asr_serve.errors import OverloadedError

logger = logging.getLogger("ray.serve")

T = TypeVar("T")

#: What a handle raises when the replica's actor is gone: ``ActorDiedError`` and
#: ``ActorUnavailableError`` both derive from it.
REPLICA_LOST = (RayActorError,)


async def call_retrying_once(call: Callable[[], Awaitable[T]], *, target: str) -> T:
    """Await ``call()``; if its replica died, call once more; if that dies too, 503."""
    try:
        return await call()
    except REPLICA_LOST as exc:
        logger.warning("%s replica lost mid-request (%r); retrying once", target, exc)
    try:
        return await call()
    except REPLICA_LOST:
        raise OverloadedError(
            f"the {target} replica failed twice while serving this request; retry shortly"
        ) from None
