"""Multipart parsing with the size limit enforced while the body streams in."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asr_serve.api.upload import UploadBudget, form_limit, read_upload
from asr_serve.config import LimitsConfig
from asr_serve.errors import ASRServeError, RequestTimeoutError, UploadBudgetError

LIMIT = 4096
LIMITS = LimitsConfig(max_upload_bytes=LIMIT)


def _read(request: Request, limits: LimitsConfig = LIMITS, budget: UploadBudget | None = None):
    return read_upload(request, limits=limits, budget=budget or UploadBudget(1 << 30, 100))


async def _endpoint(request: Request) -> JSONResponse:
    try:
        upload = await _read(request)
    except ASRServeError as exc:
        return JSONResponse(exc.to_dict(), status_code=exc.status_code)
    return JSONResponse({"size": len(upload.data), "fields": upload.fields})


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(Starlette(routes=[Route("/", _endpoint, methods=["POST"])]))


def test_reads_file_and_fields(client: TestClient) -> None:
    resp = client.post(
        "/",
        files={"file": ("a.wav", b"x" * 100, "audio/wav")},
        data={"model": "m", "timestamp_granularities[]": ["word", "segment"]},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["size"] == 100
    assert body["fields"] == {"model": "m", "timestamp_granularities": ["word", "segment"]}


def test_single_bracket_field_is_still_a_list(client: TestClient) -> None:
    resp = client.post(
        "/", files={"file": ("a.wav", b"x")}, data={"timestamp_granularities[]": "word"}
    )
    assert resp.json()["fields"] == {"timestamp_granularities": ["word"]}


def test_file_over_limit_is_413(client: TestClient) -> None:
    resp = client.post("/", files={"file": ("a.wav", b"x" * (LIMIT + 1))})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


def test_declared_length_over_limit_is_413_without_reading() -> None:
    seen: list[int] = []

    async def endpoint(request: Request) -> JSONResponse:
        try:
            await _read(request)
        except ASRServeError as exc:
            seen.append(exc.status_code)
            return JSONResponse(exc.to_dict(), status_code=exc.status_code)
        return JSONResponse({})

    client = TestClient(Starlette(routes=[Route("/", endpoint, methods=["POST"])]))
    body = b"--b\r\n" + b"x" * (form_limit(LimitsConfig(max_upload_bytes=LIMIT)) + 10)
    resp = client.post(
        "/", content=body, headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert resp.status_code == 413 and seen == [413]


def test_streamed_body_without_length_is_cut_off() -> None:
    """Chunked upload, no Content-Length: reading stops once the limit is passed."""
    chunks = [b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n']
    chunks += [b"x" * 65536] * 1000  # 64 MB if fully read
    received = 0

    async def receive() -> dict:
        nonlocal received
        received += 1
        return {"type": "http.request", "body": chunks[received - 1], "more_body": True}

    scope = {
        "type": "http",
        "method": "POST",
        "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
    }
    with pytest.raises(ASRServeError) as err:
        asyncio.run(_read(Request(scope, receive)))
    assert err.value.status_code == 413
    assert received < 10  # stopped long before the end of the body


@pytest.mark.parametrize(
    ("kwargs", "status", "code"),
    [
        ({"content": b"abc", "headers": {"content-type": "audio/wav"}}, 415, None),
        ({"data": {"model": "m"}, "files": {"other": ("x", b"1")}}, 400, "invalid_request"),
        (
            {"content": b"garbage", "headers": {"content-type": "multipart/form-data"}},
            400,
            "invalid_request",
        ),
        ({"data": {"file": "not-a-file"}, "files": {"x": ("x", b"1")}}, 400, "invalid_request"),
    ],
)
def test_bad_forms(client: TestClient, kwargs: dict, status: int, code: str | None) -> None:
    resp = client.post("/", **kwargs)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["message"] and error["type"] == "invalid_request_error"
    if code:
        assert error["code"] == code


SCOPE = {
    "type": "http",
    "method": "POST",
    "headers": [(b"content-type", b"multipart/form-data; boundary=b")],
}
PROLOGUE = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'


def _trickle(interval_s: float, chunks: int = 1000):
    """An ASGI receive that sends the prologue, then one byte every ``interval_s``."""
    sent = 0

    async def receive() -> dict:
        nonlocal sent
        sent += 1
        if sent > 1:
            await asyncio.sleep(interval_s)
        body = PROLOGUE if sent == 1 else b"x"
        return {"type": "http.request", "body": body, "more_body": sent < chunks}

    return receive


def test_an_upload_that_stalls_is_408() -> None:
    limits = LIMITS.model_copy(update={"upload_idle_timeout_s": 0.05})
    with pytest.raises(RequestTimeoutError, match=r"no part of the upload arrived for 0\.05 s"):
        asyncio.run(_read(Request(SCOPE, _trickle(interval_s=10)), limits))


def test_an_upload_that_trickles_past_its_deadline_is_408() -> None:
    """Each byte comes within the idle bound, the whole body not within the overall one."""
    limits = LIMITS.model_copy(update={"upload_timeout_s": 0.3, "upload_idle_timeout_s": 0.1})
    error, took = asyncio.run(_timed(_read(Request(SCOPE, _trickle(interval_s=0.02)), limits)))
    assert isinstance(error, RequestTimeoutError) and error.status_code == 408
    assert "not complete within 0.3 s" in error.message
    assert 0.3 <= took < 1.0


async def _timed(coro) -> tuple[BaseException | None, float]:
    loop = asyncio.get_running_loop()
    begun = loop.time()
    try:
        await coro
    except ASRServeError as exc:
        return exc, loop.time() - begun
    return None, loop.time() - begun


def test_a_lost_proxy_connection_is_a_disconnect_not_a_failure() -> None:
    """Serve's replica raises Ray's TaskCancelledError when the client hangs up mid-body."""

    class TaskCancelledError(Exception):
        pass

    async def receive() -> dict:
        raise TaskCancelledError("task was cancelled")

    with pytest.raises(ASRServeError) as err:
        asyncio.run(_read(Request(SCOPE, receive)))
    assert err.value.status_code == 400 and "disconnected" in err.value.message


def test_the_budget_refuses_past_its_bytes_and_gets_them_back() -> None:
    budget = UploadBudget(1000, max_uploads=3)
    with budget.account() as take:
        take(600)
        with budget.account() as other:
            with pytest.raises(UploadBudgetError) as err:
                other(500)  # 1100 > 1000: refused, and nothing taken
            other(400)
            assert budget.held == 1000
            with pytest.raises(UploadBudgetError), budget.account():  # spent: refused at once
                pass
        assert budget.held == 600
    assert budget.held == 0
    assert err.value.status_code == 503 and err.value.retry_after_s == 1.0


def test_an_upload_over_the_budget_is_503_and_returns_what_it_took() -> None:
    budget = UploadBudget(2000, max_uploads=3)
    chunks = [PROLOGUE, b"x" * 1000, b"x" * 1000, b"x" * 1000]
    position = 0

    async def receive() -> dict:
        nonlocal position
        position += 1
        return {"type": "http.request", "body": chunks[position - 1], "more_body": True}

    with pytest.raises(UploadBudgetError):
        asyncio.run(_read(Request(SCOPE, receive), budget=budget))
    assert budget.held == 0


def test_the_budget_refuses_an_upload_past_its_count_at_once() -> None:
    budget = UploadBudget(1 << 20, max_uploads=2)
    with budget.account(), budget.account():
        with pytest.raises(UploadBudgetError) as err, budget.account():
            pass
        assert budget.uploads == 2
    assert budget.uploads == 0 and err.value.retry_after_s == 1.0


def test_object_fields_arrive_as_objects(client: TestClient) -> None:
    """``name[key]`` form fields, as the openai client sends ``chunking_strategy``."""
    resp = client.post(
        "/",
        files={"file": ("a.wav", b"x")},
        data={"chunking_strategy[type]": "server_vad", "chunking_strategy[threshold]": "0.6"},
    )
    assert resp.json()["fields"] == {
        "chunking_strategy": {"type": "server_vad", "threshold": "0.6"}
    }
    both = client.post(
        "/",
        files={"file": ("a.wav", b"x")},
        data={"chunking_strategy": "auto", "chunking_strategy[type]": "server_vad"},
    )
    assert both.status_code == 400 and "both" in both.json()["error"]["message"]


def test_reference_clips_have_a_bound_of_their_own(client: TestClient) -> None:
    """A 10 s WAV as a data URL (~430 KB) fits ``known_speaker_references[]``, four of them;
    a fifth, a larger one, or any other field over 64 KiB is refused naming the field."""
    url = "data:audio/wav;base64," + "A" * 430_000
    ok = client.post(
        "/",
        files={"file": ("a.wav", b"x" * 100, "audio/wav")},
        data={"known_speaker_references[]": [url] * 4},
    )
    assert ok.status_code == 200 and len(ok.json()["fields"]["known_speaker_references"]) == 4
    for data, param in (
        ({"known_speaker_references[]": [url] * 5}, "known_speaker_references"),
        ({"known_speaker_references[]": ["A" * (3 * 1024 * 1024)]}, "known_speaker_references"),
        ({"prompt": "x" * (65 * 1024)}, None),
    ):
        resp = client.post("/", files={"file": ("a.wav", b"x", "audio/wav")}, data=data)
        assert resp.status_code == 400
        assert resp.json()["error"]["param"] == param


def test_the_file_gets_none_of_the_room_for_references(client: TestClient) -> None:
    resp = client.post("/", files={"file": ("a.wav", b"x" * (LIMIT + 1), "audio/wav")})
    assert resp.status_code == 413
