"""Out-of-memory during a batch: split it in half and retry, down to one item.

A batch that does not fit (long clips, another replica on the same GPU, fragmentation)
must not fail every request in it, nor leave the replica unhealthy. On an out-of-memory
error the batch's references are dropped, the allocator's cache is freed, and each half is
retried; an item that fails alone gets :class:`InsufficientMemoryError` (503) while the
rest of its batch still succeeds.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from asr_serve.errors import InsufficientMemoryError

logger = logging.getLogger("ray.serve")

Item = TypeVar("Item")
Result = TypeVar("Result")

# CTranslate2 (faster-whisper) reports CUDA OOM as a RuntimeError with this text; torch's
# CPU allocator as "can't allocate memory".
_OOM_MESSAGES = ("out of memory", "can't allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """``torch.OutOfMemoryError``, or another engine's allocation failure."""
    torch = sys.modules.get("torch")  # if torch was never imported, the error is not torch's
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError | MemoryError) and any(
        m in str(exc).lower() for m in _OOM_MESSAGES
    )


def free_accelerator_memory() -> None:
    """Collect the dropped batch's tensors and hand cached CUDA blocks back."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_splitting_on_oom(
    run: Callable[[Sequence[Item]], list[Result]],
    items: Sequence[Item],
    *,
    on_oom: Callable[[int], None] = lambda size: None,
) -> list[Result | InsufficientMemoryError]:
    """``run(items)``; on out-of-memory, run each half the same way. Results in order.

    ``on_oom(batch_size)`` is told of every out-of-memory error (for metrics).
    """
    try:
        return list(run(items))
    except Exception as exc:
        if not is_out_of_memory(exc):
            raise
        logger.warning("out of memory on a batch of %d; splitting it", len(items))
    # Outside the except block: the traceback (and the tensors its frames hold) is gone.
    on_oom(len(items))
    free_accelerator_memory()
    if len(items) == 1:
        return [
            InsufficientMemoryError(
                "This audio alone does not fit in the model's memory right now; "
                "retry later or send a shorter file.",
                param="file",
            )
        ]
    half = (len(items) + 1) // 2
    return [
        *run_splitting_on_oom(run, items[:half], on_oom=on_oom),
        *run_splitting_on_oom(run, items[half:], on_oom=on_oom),
    ]
