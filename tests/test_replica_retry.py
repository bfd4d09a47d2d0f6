"""The ingress's retry-once when a downstream replica died mid-request."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError

from asr_serve.errors import InvalidAudioError, OverloadedError
from asr_serve.replica_retry import call_retrying_once


def _flaky(*outcomes: BaseException | str):
    """An idempotent call whose successive attempts raise or return ``outcomes`` in order."""
    attempts: list[int] = []

    async def call() -> str:
        outcome = outcomes[len(attempts)]
        attempts.append(1)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return call, attempts


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("gone", None)])
def test_a_lost_replica_is_retried_once(lost: BaseException) -> None:
    call, attempts = _flaky(lost, "text")
    assert asyncio.run(call_retrying_once(call, target="decoder")) == "text"
    assert len(attempts) == 2


def test_two_losses_in_a_row_are_503() -> None:
    call, attempts = _flaky(ActorDiedError(), ActorDiedError(), "never")
    with pytest.raises(OverloadedError, match="failed twice"):
        asyncio.run(call_retrying_once(call, target="ASR"))
    assert len(attempts) == 2


def test_the_request_own_errors_are_not_retried() -> None:
    call, attempts = _flaky(InvalidAudioError("bad"), "never")
    with pytest.raises(InvalidAudioError):
        asyncio.run(call_retrying_once(call, target="decoder"))
    assert len(attempts) == 1
