"""Multipart parsing with the size limit enforced while the body streams in."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from asr_serve.api.upload import FORM_OVERHEAD_BYTES, read_upload
from asr_serve.errors import ASRServeError

LIMIT = 4096


async def _endpoint(request: Request) -> JSONResponse:
    try:
        upload = await read_upload(request, max_bytes=LIMIT)
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
            await read_upload(request, max_bytes=LIMIT)
        except ASRServeError as exc:
            seen.append(exc.status_code)
            return JSONResponse(exc.to_dict(), status_code=exc.status_code)
        return JSONResponse({})

    client = TestClient(Starlette(routes=[Route("/", endpoint, methods=["POST"])]))
    body = b"--b\r\n" + b"x" * (LIMIT + FORM_OVERHEAD_BYTES + 10)
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
        asyncio.run(read_upload(Request(scope, receive), max_bytes=LIMIT))
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
