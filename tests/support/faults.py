"""Fault injection for tests: make a real model run out of memory the way a GPU does.

CPU runs never raise ``torch.OutOfMemoryError`` by themselves, so the out-of-memory path
is exercised by a forward pre-hook that raises exactly that type (with CUDA's message)
when a module is called with a batch larger than a threshold: everything around it, the
engine, ``run_batch`` and the split-and-retry, runs for real.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


def _batch_size(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    for name in ("inputs_embeds", "input_ids", "input_features"):
        if isinstance(kwargs.get(name), torch.Tensor):
            return kwargs[name].shape[0]
    tensor = next(a for a in args if isinstance(a, torch.Tensor))
    return tensor.shape[0]


@contextlib.contextmanager
def out_of_memory_above(module: torch.nn.Module, max_batch: int) -> Iterator[list[int]]:
    """While active, ``module`` raises ``torch.OutOfMemoryError`` on batches over ``max_batch``.

    Yields the batch sizes the module was called with, in order.
    """
    seen: list[int] = []

    def hook(_: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        size = _batch_size(args, kwargs)
        seen.append(size)
        if size > max_batch:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {size * 512} MiB (injected: batch of "
                f"{size} > {max_batch})"
            )

    handle = module.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield seen
    finally:
        handle.remove()
