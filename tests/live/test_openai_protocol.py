"""The OpenAI Realtime adapter over an in-process WebSocket, with a fake model.

Every event the server sends is checked against the ``openai`` SDK's own types, strictly
(pydantic validation of the server-event union) and as the SDK's lax parser reads it, so
a missing field or a wrong shape fails here rather than in a user's code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openai._models import construct_type_unchecked
from openai.types.beta.realtime import RealtimeServerEvent as BetaServerEvent
from openai.types.realtime import RealtimeServerEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

from asr_serve.config import LiveConfig
from asr_serve.engines.base import EngineResult
from asr_serve.errors import ModelNotReadyError
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.protocols.connection import LiveContext, accepted_subprotocol
from asr_serve.live.protocols.openai_realtime import SUBPROTOCOLS, OpenAIRealtimeConnection
from asr_serve.live.transcribe import TranscribeRequest
from devtools.speech import pcm16, speech_with_pauses
from devtools.text import SENTENCES
from tests.live.conftest import DETECTED, FakeTranscriber
from tests.support.realtime import chunks

_STRICT = TypeAdapter(RealtimeServerEvent)


class _Client:
    def __init__(self, ws: Any) -> None:
        self.ws = ws

    def send(self, event: dict[str, Any] | str | bytes) -> None:
        if isinstance(event, bytes):
            self.ws.send_bytes(event)
        else:
            self.ws.send_text(event if isinstance(event, str) else json.dumps(event))

    def recv(self) -> dict[str, Any]:
        event = json.loads(self.ws.receive_text())
        _check(event)
        return event

    def error(self) -> dict[str, Any]:
        event = self.recv()
        assert event["type"] == "error", event
        return event["error"]

    def append(self, data: bytes, **fields: Any) -> None:
        self.send({"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()})

    def update(self, session: dict[str, Any], **fields: Any) -> dict[str, Any]:
        self.send({"type": "session.update", "session": session, **fields})
        return self.recv()

    def assert_usable(self) -> None:
        """The session still answers: a clear is acknowledged."""
        self.send({"type": "input_audio_buffer.clear"})
        assert self.recv()["type"] == "input_audio_buffer.cleared"

    def closed(self) -> tuple[int, str]:
        message = self.ws.receive()
        assert message["type"] == "websocket.close", message
        return message["code"], message["reason"]


def _check(event: dict[str, Any]) -> None:
    """What the SDK makes of the event: its own class for that type, strictly valid (beta
    session events can only be lax: the beta types require a client secret and OpenAI's
    model names)."""
    assert event["event_id"].startswith("event_")
    if event["type"] == "transcription_session.updated":
        parsed = construct_type_unchecked(value=event, type_=BetaServerEvent)
        assert type(parsed).__name__ == "TranscriptionSessionUpdatedEvent"
        return
    _STRICT.validate_python(event)
    parsed = construct_type_unchecked(value=event, type_=RealtimeServerEvent)
    assert parsed.type == event["type"]
    assert type(parsed).__name__ != "ConversationCreatedEvent"  # the SDK's fallback class
    if event["type"] in ("session.created", "session.updated"):
        assert type(parsed.session).__name__ == "RealtimeTranscriptionSessionCreateRequest"


@contextlib.contextmanager
def _connect(
    query: str = "?model=m1&intent=transcription", transcriber: Any = None, **config: Any
) -> Iterator[_Client]:
    transcriber = transcriber or FakeTranscriber()

    async def endpoint(websocket: WebSocket) -> None:
        await websocket.accept()
        live = LiveConfig.model_validate(config)
        context = LiveContext(transcriber, ["m1", "m2"], "m1", live, LiveCounters())
        await OpenAIRealtimeConnection(websocket, context).run()

    app = Starlette(routes=[WebSocketRoute("/v1/realtime", endpoint)])
    with TestClient(app) as http, http.websocket_connect(f"/v1/realtime{query}") as ws:
        yield _Client(ws)


@pytest.fixture
def client() -> Iterator[_Client]:
    with _connect() as client:
        created = client.recv()
        assert created["type"] == "session.created"
        yield client


def test_session_created_comes_first_with_openai_defaults(client: _Client) -> None:
    session = client.update({})["session"]
    assert session["type"] == "transcription"
    assert session["id"].startswith("sess_")
    audio = session["audio"]["input"]
    assert audio["format"] == {"type": "audio/pcm", "rate": 24000}
    assert audio["transcription"]["model"] == "m1"
    assert audio["turn_detection"] == {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 500,
    }
    assert audio["noise_reduction"] is None


def test_without_a_model_the_default_is_used() -> None:
    with _connect("") as client:
        session = client.recv()["session"]
        assert session["audio"]["input"]["transcription"]["model"] == "m1"


@pytest.mark.parametrize(
    ("query", "param"), [("?model=nope", "model"), ("?model=m1&intent=conversation", "intent")]
)
def test_an_unknown_model_or_intent_in_the_url_is_refused_and_closed(query, param) -> None:
    with _connect(query) as client:
        error = client.error()
        assert error["param"] == param
        assert client.closed()[0] == 1008


def test_updates_merge_field_by_field(client: _Client) -> None:
    td = "turn_detection"
    first = {"type": "transcription", "audio": {"input": {td: {"threshold": 0.7}}}}
    assert client.update(first)["session"]["audio"]["input"][td]["threshold"] == 0.7
    second = {"audio": {"input": {td: {"silence_duration_ms": 800}, "transcription": {}}}}
    audio = client.update(second)["session"]["audio"]["input"]
    assert (audio[td]["threshold"], audio[td]["silence_duration_ms"]) == (0.7, 800)
    assert audio["transcription"]["model"] == "m1"
    assert client.update({"audio": {"input": {td: None}}})["session"]["audio"]["input"][td] is None
    # Turning it on again starts from OpenAI's defaults.
    audio = client.update({"audio": {"input": {td: {"type": "server_vad"}}}})["session"]
    assert audio["audio"]["input"][td]["threshold"] == 0.5
    fmt = client.update({"audio": {"input": {"format": {"type": "audio/pcmu"}}}})["session"]
    assert fmt["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    model = {"audio": {"input": {"transcription": {"model": "m2", "language": "en"}}}}
    transcription = client.update(model)["session"]["audio"]["input"]["transcription"]
    assert transcription == {"model": "m2", "language": "en", "prompt": None}


_REFUSED_UPDATES = [
    ({"audio": {"input": {"turn_detection": {"type": "semantic_vad"}}}},
     "invalid_value", "session.audio.input.turn_detection.type"),
    ({"audio": {"input": {"noise_reduction": {"type": "near_field"}}}},
     "unsupported_value", "session.audio.input.noise_reduction"),
    ({"include": ["item.input_audio_transcription.logprobs"]}, "invalid_value", "session.include"),
    ({"audio": {"input": {"transcription": {"model": "gpt-4o-transcribe"}}}},
     "model_not_found", "session.audio.input.transcription.model"),
    ({"audio": {"input": {"transcription": {"languages": ["en"]}}}},
     "unknown_parameter", "session.audio.input.transcription.languages"),
    ({"type": "realtime"}, "invalid_value", "session.type"),
    ({"audio": {"input": {"format": {"type": "audio/pcma", "rate": 16000}}}},
     "invalid_value", "session.audio.input.format"),
    ({"audio": {"input": {"format": {"type": "audio/pcm", "rate": 4000}}}},
     "invalid_value", "session.audio.input.format.rate"),
    ({"audio": {"input": {"turn_detection": {"idle_timeout_ms": 5000}}}},
     "unsupported_value", "session.audio.input.turn_detection.idle_timeout_ms"),
    ({"audio": {"input": {"turn_detection": {"create_response": True}}}},
     "invalid_value", "session.audio.input.turn_detection.create_response"),
    ({"audio": {"input": {"turn_detection": {"threshold": 1.5}}}},
     "invalid_value", "session.audio.input.turn_detection.threshold"),
    ({"audio": {"output": {}}}, "unknown_parameter", "session.audio.output"),
    ({"audio": {"input": {"transcription": {"prompt": "p" * 4097}}}},
     "string_above_max_length", "session.audio.input.transcription.prompt"),
    ({"audio": {"input": {"transcription": {"language": "x" * 33}}}},
     "string_above_max_length", "session.audio.input.transcription.language"),
]  # fmt: skip


@pytest.mark.parametrize(("session", "code", "param"), _REFUSED_UPDATES)
def test_an_unsupported_update_is_refused_by_name_and_changes_nothing(
    client: _Client, session: dict, code: str, param: str
) -> None:
    error = client.update(session, event_id="evt_7")["error"]
    assert (error["code"], error["param"], error["event_id"]) == (code, param, "evt_7")
    assert error["type"] == "invalid_request_error"
    assert param.rsplit(".", 1)[-1] in error["message"]
    echo = client.update({})["session"]["audio"]["input"]
    assert echo["turn_detection"]["type"] == "server_vad"
    assert echo["format"] == {"type": "audio/pcm", "rate": 24000}
    assert echo["transcription"]["model"] == "m1"


def test_a_switch_the_session_cannot_make_is_refused(client: _Client) -> None:
    client.update({"audio": {"input": {"format": {"type": "audio/pcmu"}}}})
    error = client.update({"audio": {"input": {"format": {"rate": 16000}}}})["error"]
    assert (error["code"], error["param"]) == ("invalid_value", "session.audio.input.format")


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("{not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        ('{"type": "response.create"}', "invalid_event_type", "type"),
        ('{"no": "type"}', "invalid_event_type", "type"),
        (b"\x00\x01", "invalid_event", None),
        ('{"type": "input_audio_buffer.append"}', "missing_required_parameter", "audio"),
        ('{"type": "input_audio_buffer.append", "audio": "***"}', "invalid_audio", "audio"),
        ('{"type": "input_audio_buffer.append", "audio": "AA=="}', "invalid_audio", "audio"),
        ('{"type": "input_audio_buffer.commit", "x": 1}', "unknown_parameter", "x"),
        ('{"type": "input_audio_buffer.commit"}', "input_audio_buffer_commit_empty", None),
    ],
)
def test_a_bad_client_event_is_an_error_event_and_the_session_goes_on(
    client: _Client, frame: str | bytes, code: str, param: str | None
) -> None:
    client.send(frame)
    error = client.error()
    assert (error["code"], error["param"]) == (code, param)
    assert error["type"] == "invalid_request_error"
    client.assert_usable()


def test_a_prompt_of_a_megabyte_is_refused_by_name() -> None:
    """Over ``max_prompt_chars`` (the HTTP path's limit), whatever its size; the session
    keeps its prompt and goes on. The older update shape names its own field."""
    with _connect() as client:
        client.recv()
        prompt = {"transcription": {"prompt": "hotword, " * 130_000}}
        error = client.update({"audio": {"input": prompt}})["error"]
        assert (error["code"], error["param"]) == (
            "string_above_max_length",
            "session.audio.input.transcription.prompt",
        )
        assert "4096" in error["message"] and len(error["message"]) < 200
        beta = {
            "type": "transcription_session.update",
            "session": {"input_audio_transcription": {"prompt": "p" * 5000}},
        }
        client.send(beta)
        assert client.error()["param"] == "session.input_audio_transcription.prompt"
        assert client.update({})["session"]["audio"]["input"]["transcription"]["prompt"] is None


@pytest.mark.parametrize(
    ("frame", "says"),
    [
        ("[" * 200_000, "at most 32 objects and arrays"),
        ('{"type": "session.update", "session": ' + "[" * 40 + "]" * 40 + "}", "deeper than 32"),
    ],
)
def test_deep_json_is_an_error_event_not_a_crash(client: _Client, frame: str, says: str) -> None:
    client.send(frame)
    error = client.error()
    assert error["code"] == "invalid_json" and says in error["message"]
    client.assert_usable()


def test_a_long_event_id_is_refused_and_never_echoed(client: _Client) -> None:
    client.send({"type": "input_audio_buffer.clear", "event_id": "e" * 257})
    error = client.error()
    assert (error["code"], error["param"], error["event_id"]) == (
        "string_above_max_length",
        "event_id",
        None,
    )
    client.send({"type": "t" * 100_000})
    assert len(client.error()["message"]) < 300  # the unknown type is echoed cut
    client.send({"type": "input_audio_buffer.clear", "k" * 100_000: 1})
    error = client.error()
    assert error["code"] == "unknown_parameter" and len(error["param"]) < 200
    client.assert_usable()


def test_errors_echo_the_client_event_id(client: _Client) -> None:
    client.send({"type": "input_audio_buffer.commit", "event_id": "client_evt_7"})
    assert client.error()["event_id"] == "client_evt_7"
    client.send({"type": "nope", "event_id": "client_evt_8"})
    assert client.error()["event_id"] == "client_evt_8"


def test_an_append_over_the_size_limit_is_refused_unread() -> None:
    with _connect(max_append_bytes=9600) as client:
        client.recv()
        client.update({"audio": {"input": {"turn_detection": None}}})
        client.append(bytes(9602))
        assert client.error()["code"] == "payload_too_large"
        client.append(bytes(9600))
        client.send({"type": "input_audio_buffer.commit"})
        assert client.recv()["type"] == "input_audio_buffer.committed"


def test_manual_turns_commit_chain_and_transcribe(client: _Client) -> None:
    client.update({"audio": {"input": {"turn_detection": None}}})
    items = []
    for seconds in (1, 2):
        client.append(bytes(48_000 * seconds))
        client.send({"type": "input_audio_buffer.commit"})
        committed = client.recv()
        assert committed["type"] == "input_audio_buffer.committed"
        assert committed["previous_item_id"] == (items[-1] if items else None)
        delta, completed = client.recv(), client.recv()
        assert delta["type"] == "conversation.item.input_audio_transcription.delta"
        assert completed["type"] == "conversation.item.input_audio_transcription.completed"
        assert delta["item_id"] == completed["item_id"] == committed["item_id"]
        # The fake model says a word per half second.
        assert (
            completed["transcript"]
            == delta["delta"]
            == " ".join(f"w{i}" for i in range(2 * seconds))
        )
        assert completed["usage"] == {"type": "duration", "seconds": seconds}
        assert completed["content_index"] == 0
        items.append(committed["item_id"])


def test_completed_names_the_detected_language_only_when_the_session_names_none(
    client: _Client,
) -> None:
    client.update({"audio": {"input": {"turn_detection": None}}})
    languages = []
    for language in (None, "fr"):
        client.update({"audio": {"input": {"transcription": {"language": language}}}})
        client.append(bytes(48_000))
        client.send({"type": "input_audio_buffer.commit"})
        client.recv(), client.recv()
        completed = client.recv()
        assert completed["type"] == "conversation.item.input_audio_transcription.completed"
        languages.append(completed["languages"])
    assert languages == [[{"code": DETECTED}], None]


def test_a_declared_rate_is_honoured_though_the_echo_says_24000(client: _Client) -> None:
    fmt = {"type": "audio/pcm", "rate": 16000}
    session = client.update({"audio": {"input": {"format": fmt, "turn_detection": None}}})
    assert session["session"]["audio"]["input"]["format"]["rate"] == 24000
    client.append(bytes(32_000))  # 1 s at 16 kHz, 0.67 s at 24 kHz
    client.send({"type": "input_audio_buffer.commit"})
    client.recv(), client.recv()
    assert client.recv()["usage"]["seconds"] == 1.0


def test_the_older_transcription_session_update_shape(client: _Client) -> None:
    client.send(
        {
            "type": "transcription_session.update",
            "session": {
                "input_audio_format": "g711_ulaw",
                "input_audio_transcription": {"model": "m2", "language": "en"},
                "turn_detection": None,
            },
        }
    )
    updated = client.recv()
    assert updated["type"] == "transcription_session.updated"
    session = updated["session"]
    assert session["input_audio_format"] == "g711_ulaw"
    assert session["input_audio_transcription"]["model"] == "m2"
    assert session["turn_detection"] is None
    client.append(bytes([0xFF]) * 8_000)  # 1 s of μ-law silence
    client.send({"type": "input_audio_buffer.commit"})
    client.recv(), client.recv()
    assert client.recv()["usage"]["seconds"] == 1.0
    for session, param in (
        ({"turn_detection": {"type": "semantic_vad"}}, "session.turn_detection.type"),
        (
            {"input_audio_transcription": {"model": "whisper-1"}},
            "session.input_audio_transcription.model",
        ),
        (
            {"input_audio_noise_reduction": {"type": "far_field"}},
            "session.input_audio_noise_reduction",
        ),
    ):
        client.send({"type": "transcription_session.update", "session": session})
        assert client.error()["param"] == param


def test_server_vad_events_for_speech(client: _Client) -> None:
    speech = speech_with_pauses([SENTENCES[1], SENTENCES[3]], pause_s=1.0)
    for chunk in chunks(pcm16(speech.audio, 24_000), 9_600):
        client.append(chunk)
    kinds: dict[str, list[dict]] = {}
    while len(kinds.get("conversation.item.input_audio_transcription.completed", [])) < 2:
        event = client.recv()
        kinds.setdefault(event["type"], []).append(event)
    started = kinds["input_audio_buffer.speech_started"]
    stopped = kinds["input_audio_buffer.speech_stopped"]
    committed = kinds["input_audio_buffer.committed"]
    assert [e["item_id"] for e in started] == [e["item_id"] for e in stopped]
    assert [e["item_id"] for e in committed] == [e["item_id"] for e in started]
    assert committed[1]["previous_item_id"] == committed[0]["item_id"]
    assert started[0]["audio_start_ms"] < stopped[0]["audio_end_ms"] < started[1]["audio_start_ms"]
    assert kinds["conversation.item.input_audio_transcription.delta"]


def test_a_failed_transcription_is_a_failed_event() -> None:
    async def down(request: TranscribeRequest) -> EngineResult:
        raise ModelNotReadyError("the model is loading")

    with _connect(transcriber=down) as client:
        client.recv()
        client.update({"audio": {"input": {"turn_detection": None}}})
        client.append(bytes(9_600))
        client.send({"type": "input_audio_buffer.commit"})
        committed, failed = client.recv(), client.recv()
        assert failed["type"] == "conversation.item.input_audio_transcription.failed"
        assert failed["item_id"] == committed["item_id"]
        assert failed["error"]["code"] == "model_not_ready"
        assert failed["error"]["message"] == "the model is loading"
        client.assert_usable()


def test_idle_sessions_are_closed_after_their_items_finish() -> None:
    with _connect(transcriber=FakeTranscriber(delay_s=0.3), idle_timeout_s=0.5) as client:
        client.recv()
        client.update({"audio": {"input": {"turn_detection": None}}})
        client.append(bytes(48_000))
        client.send({"type": "input_audio_buffer.commit"})
        types = [client.recv()["type"] for _ in range(3)]
        assert types[-1] == "conversation.item.input_audio_transcription.completed"
        assert client.closed() == (4000, "no audio for 0.5 s")


def test_empty_appends_are_not_audio_and_keep_no_session_alive() -> None:
    with _connect(idle_timeout_s=0.5) as client:
        client.recv()
        for _ in range(8):  # 0.8 s of empty appends
            client.send({"type": "input_audio_buffer.append", "audio": ""})
            time.sleep(0.1)
        assert client.closed() == (4000, "no audio for 0.5 s")


def test_a_session_ends_after_max_session_s_however_it_trickles() -> None:
    """A sample every 0.1 s is audio, so the idle timeout never comes; the wall clock does,
    once the committed items are done."""
    with _connect(max_session_s=2.0, idle_timeout_s=1.0) as client:
        client.recv()
        started = time.monotonic()
        client.update({"audio": {"input": {"turn_detection": None}}})
        client.append(bytes(9_600))
        client.send({"type": "input_audio_buffer.commit"})
        for _ in range(22):
            client.append(bytes(2))
            time.sleep(0.1)
        kinds = []
        while (message := client.ws.receive())["type"] == "websocket.send":
            kinds.append(json.loads(message["text"])["type"])
        assert kinds[-1] == "conversation.item.input_audio_transcription.completed"
        assert (message["code"], message["reason"]) == (4003, "session over 2 s")
        assert time.monotonic() - started < 4


def test_a_client_that_makes_output_faster_than_it_is_sent_is_closed_with_4002() -> None:
    """Each bad frame costs an error event; sent far faster than ``send_rate_bytes_s``, the
    events fill ``max_outbox_bytes`` and the connection is closed, what waits dropped."""
    with _connect(max_outbox_bytes=65_536, send_rate_bytes_s=4096) as client:
        client.recv()
        for _ in range(1000):  # ~300 KB of error events
            client.send(b"\x00")
        received = 0
        while (message := client.ws.receive())["type"] == "websocket.send":
            received += len(message["text"])
        assert (message["code"], message["reason"]) == (4002, "client not reading")
        assert received < 65_536 + 2 * 4096  # at most the bucket's second and the budget


def test_the_session_audio_limit_closes_the_session() -> None:
    with _connect(max_session_audio_s=1.0) as client:
        client.recv()
        client.append(bytes(48_000))
        client.append(bytes(4_800))
        error = client.error()
        assert (error["code"], error["param"]) == ("session_audio_limit", "audio")
        assert client.closed()[0] == 4001


@pytest.mark.parametrize(
    ("offered", "accepted"),
    [
        (["realtime", "openai-insecure-api-key.sk-1"], "realtime"),
        (["openai-insecure-api-key.sk-1", "realtime"], "realtime"),
        (["openai-insecure-api-key.realtime"], None),
        ([], None),
    ],
)
def test_the_socket_is_accepted_with_the_protocol_never_the_key(offered, accepted) -> None:
    websocket = WebSocket({"type": "websocket", "subprotocols": offered}, None, None)
    assert accepted_subprotocol(websocket, SUBPROTOCOLS) == accepted
