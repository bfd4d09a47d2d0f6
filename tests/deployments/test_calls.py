"""The ingress's calls downstream: retry once on a lost replica, Serve's rejections mapped."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve._private.common import DeploymentID
from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

from asr_serve.deployments.calls import (
    BY_REFERENCE_MIN_BYTES,
    Downstream,
    SizedHandle,
    call_downstream,
)
from asr_serve.engines import EngineResult, TranscribeOptions
from asr_serve.engines.batch import Transcribed
from asr_serve.errors import InternalError, InvalidAudioError, OverloadedError
from asr_serve.live.transcribe import TranscribeKind, TranscribeRequest
from asr_serve.timing import BATCH, ENGINE, QUEUE, TRANSPORT, ModelTimes, Timings, collecting


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
    assert asyncio.run(call_downstream(call, target="decoder")) == "text"
    assert len(attempts) == 2


def test_two_losses_in_a_row_are_503() -> None:
    call, attempts = _flaky(ActorDiedError(), ActorDiedError(), "never")
    with pytest.raises(OverloadedError, match="failed twice"):
        asyncio.run(call_downstream(call, target="ASR"))
    assert len(attempts) == 2


def test_the_request_own_errors_are_not_retried() -> None:
    call, attempts = _flaky(InvalidAudioError("bad"), "never")
    with pytest.raises(InvalidAudioError):
        asyncio.run(call_downstream(call, target="decoder"))
    assert len(attempts) == 1


def test_serve_back_pressure_is_503_with_its_retry_after() -> None:
    call, _ = _flaky(BackPressureError(10, 10, retry_after_s=3.0))
    with pytest.raises(OverloadedError) as exc_info:
        asyncio.run(call_downstream(call, target="ASR"))
    assert exc_info.value.retry_after_s == 3.0 and exc_info.value.status_code == 503


def test_an_unavailable_deployment_is_503() -> None:
    call, _ = _flaky(DeploymentUnavailableError(DeploymentID(name="ASR-x", app_name="asr")))
    with pytest.raises(OverloadedError, match="not available"):
        asyncio.run(call_downstream(call, target="ASR"))


def test_other_exceptions_pass_through() -> None:
    call, _ = _flaky(RuntimeError("engine broke"))
    with pytest.raises(RuntimeError, match="engine broke"):
        asyncio.run(call_downstream(call, target="ASR"))


def _from_replica(exc: Exception) -> Exception:
    """``exc`` as Ray re-raises it in the caller: a RayTaskError that is also its type."""
    return RayTaskError("transcribe", "Traceback ...", exc).as_instanceof_cause()


def test_an_api_error_from_a_replica_passes_through() -> None:
    call, _ = _flaky(_from_replica(InvalidAudioError("not audio")))
    with pytest.raises(InvalidAudioError) as exc_info:
        asyncio.run(call_downstream(call, target="decoder"))
    assert exc_info.value.to_dict()["error"]["message"] == "not audio"


def test_any_other_replica_failure_is_a_500_logged_in_one_line(caplog) -> None:
    caplog.set_level(logging.INFO, logger="ray.serve")
    call, attempts = _flaky(_from_replica(RuntimeError("engine broke")), "never")
    with pytest.raises(InternalError) as exc_info:
        asyncio.run(call_downstream(call, target="ASR-m"))
    assert exc_info.value.status_code == 500 and "engine broke" not in exc_info.value.message
    assert len(attempts) == 1
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "engine broke" in record.getMessage() and record.exc_info is None


class _Handle:
    """Just enough of a DeploymentHandle for readiness probes: ``ready.remote()``."""

    def __init__(self, outcome: BaseException | bool) -> None:
        self.outcome = outcome
        self.ready = self

    def options(self, **_: object) -> _Handle:
        return self

    def remote(self):
        async def answer() -> bool:
            if isinstance(self.outcome, BaseException):
                raise self.outcome
            return self.outcome

        return answer()


def test_ready_logs_why_a_model_is_not_ready_once_per_change(caplog) -> None:
    caplog.set_level(logging.INFO, logger="ray.serve")
    loading = _Handle(DeploymentUnavailableError(DeploymentID(name="ASR-b", app_name="asr")))
    downstream = Downstream(_Handle(True), {"a": _Handle(True), "b": loading})

    async def probes() -> list[dict[str, bool]]:
        first, second = await downstream.ready(), await downstream.ready()
        loading.outcome = True
        return [first, second, await downstream.ready()]

    assert asyncio.run(probes()) == [{"a": True, "b": False}] * 2 + [{"a": True, "b": True}]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "b is not ready" in warnings[0]
    assert "DeploymentUnavailableError" in warnings[0]
    assert any("b is ready" in r.getMessage() for r in caplog.records)


def test_an_api_error_returned_as_a_value_is_raised_and_not_retried() -> None:
    """Replicas return the request's own errors, so Serve does not log them as failures."""
    call, attempts = _flaky(InvalidAudioError("not audio", param="file"), "never")
    returned = _returning(call)
    with pytest.raises(InvalidAudioError) as exc_info:
        asyncio.run(call_downstream(returned, target="decoder"))
    assert exc_info.value.param == "file" and len(attempts) == 1


def test_an_overload_returned_as_a_value_keeps_its_retry_after() -> None:
    call, _ = _flaky(OverloadedError("queue too long", retry_after_s=7.0))
    with pytest.raises(OverloadedError) as exc_info:
        asyncio.run(call_downstream(_returning(call), target="ASR-m"))
    assert exc_info.value.retry_after_s == 7.0


def _returning(call):
    """``call`` as a replica that returns (not raises) the API errors it meets."""

    async def returning():
        try:
            return await call()
        except (InvalidAudioError, OverloadedError) as exc:
            return exc

    return returning


RESULT = EngineResult(text="text", duration=0.01)
TIMES = ModelTimes(queue_s=0.002, batch_s=0.010, engine_s=0.050, batch_size=2)


class _Recording:
    """A model handle that records how ``transcribe`` was called; its replica answers after
    ``delay_s`` with the times it reports."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls: list[dict] = []
        self.transcribe = self
        self.delay_s = delay_s

    def options(self, **_: object) -> _Recording:
        return self

    def remote(self, audio, options, *args, **kwargs):
        self.calls.append(kwargs)

        async def answer() -> Transcribed:
            await asyncio.sleep(self.delay_s)
            return Transcribed(result=RESULT, times=TIMES)

        return answer()


def test_live_finals_are_admitted_as_their_client_s_and_partials_go_behind_requests() -> None:
    """A final takes its client's share and is admitted by time, as a file's first piece is
    (not ``admitted``); a partial is best effort, with its wait at the model."""
    model = _Recording()
    transcribe = Downstream(_Recording(), {"m": model}).live_transcribe(partial_model_wait_s=0.5)
    for kind in (TranscribeKind.FINAL, TranscribeKind.PARTIAL):
        request = TranscribeRequest(
            "s", "m", np.zeros(160, np.float32), TranscribeOptions(), kind, lambda: True, "key:a"
        )
        assert asyncio.run(transcribe(request)) == RESULT
    assert model.calls == [
        {"partial_wait_s": None, "client": "key:a"},
        {"partial_wait_s": 0.5, "client": "key:a"},
    ]


def test_a_model_call_records_the_replica_stages_and_the_rest_as_transport() -> None:
    """The replica's times come back with its result; what the call took beyond them is
    the way there and back."""
    downstream = Downstream(_Recording(), {"m": _Recording(delay_s=TIMES.total_s + 0.02)})

    async def request() -> tuple[EngineResult, Timings]:
        with collecting(Timings()) as timings:
            result = await downstream.transcribe(
                "m", np.zeros(160, np.float32), TranscribeOptions(), admitted=False, client=""
            )
        return result, timings

    result, timings = asyncio.run(request())
    assert result == RESULT
    assert list(timings.stages) == [QUEUE, BATCH, ENGINE, TRANSPORT]
    assert timings.stages[ENGINE] == TIMES.engine_s
    assert 0.02 <= timings.stages[TRANSPORT] < 0.5


class _Routed(_Recording):
    """A model handle whose calls record which way they went."""

    def __init__(self, by_reference: bool = False, log: list[bool] | None = None) -> None:
        super().__init__()
        self.by_reference, self.log = by_reference, [] if log is None else log

    def options(self, _by_reference: bool = False) -> _Routed:
        return _Routed(self.by_reference or _by_reference, self.log)

    def remote(self, *args, **kwargs):
        self.log.append(self.by_reference)
        return super().remote(*args, **kwargs)


def test_large_calls_go_by_reference_and_small_ones_by_value() -> None:
    handle = SizedHandle(_Routed())
    assert not handle.carrying(BY_REFERENCE_MIN_BYTES - 1).by_reference
    assert handle.carrying(BY_REFERENCE_MIN_BYTES).by_reference


def test_a_piece_s_samples_choose_the_way_to_the_model() -> None:
    """17 s of float32 samples and more go by reference; a shorter clip by value."""
    model = _Routed()
    downstream = Downstream(_Recording(), {"m": model})
    for seconds in (16, 17):
        audio = np.zeros(16_000 * seconds, np.float32)
        asyncio.run(downstream.transcribe("m", audio, TranscribeOptions(), False, ""))
    assert model.log == [False, True]
