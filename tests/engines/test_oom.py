"""Out of memory in a batch: split in halves, retry, down to one item; caches freed."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from asr_serve.engines import oom
from asr_serve.engines.oom import is_out_of_memory, run_splitting_on_oom
from asr_serve.errors import InsufficientMemoryError, OverloadedError


def _fits_up_to(limit: int, calls: list[list[int]]):
    def run(items: Sequence[int]) -> list[str]:
        calls.append(list(items))
        if len(items) > limit or any(i < 0 for i in items):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [f"r{i}" for i in items]

    return run


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (torch.OutOfMemoryError("CUDA out of memory"), True),
        (RuntimeError("CUDA failed with error out of memory"), True),  # CTranslate2
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."), True),
        (RuntimeError("shape mismatch"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_is_out_of_memory(exc: BaseException, expected: bool) -> None:
    assert is_out_of_memory(exc) is expected


def test_batch_is_split_until_it_fits_and_order_is_kept() -> None:
    calls: list[list[int]] = []
    sizes: list[int] = []
    results = run_splitting_on_oom(_fits_up_to(2, calls), list(range(7)), on_oom=sizes.append)
    assert results == [f"r{i}" for i in range(7)]
    assert calls[0] == list(range(7))
    assert max(len(c) for c in calls[1:]) <= 4
    assert sizes[0] == 7 and all(s > 2 for s in sizes)


def test_an_item_too_big_alone_fails_alone() -> None:
    """Only the item that cannot fit gets the error; its batch-mates still succeed."""
    results = run_splitting_on_oom(_fits_up_to(8, []), [1, 2, -3, 4])
    assert results[:2] == ["r1", "r2"] and results[3] == "r4"
    error = results[2]
    assert isinstance(error, InsufficientMemoryError) and isinstance(error, OverloadedError)
    assert error.status_code == 503 and error.to_dict()["error"]["code"] == "insufficient_memory"


def test_other_errors_are_not_retried() -> None:
    calls: list[list[int]] = []

    def run(items: Sequence[int]) -> list[str]:
        calls.append(list(items))
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        run_splitting_on_oom(run, [1, 2, 3])
    assert len(calls) == 1


def test_cuda_cache_is_emptied_after_an_oom(monkeypatch: pytest.MonkeyPatch) -> None:
    emptied: list[bool] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    run_splitting_on_oom(_fits_up_to(1, []), [1, 2])
    assert emptied == [True]
    oom.free_accelerator_memory()
    assert len(emptied) == 2
