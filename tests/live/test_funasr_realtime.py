"""funasr's Fun-ASR-Nano realtime protocol end to end: a client written from
``funasr/bin/realtime_ws.py`` (with the ``websockets`` library) over a real WebSocket
(uvicorn) to the adapter, the core and the real engine: Whisper tiny.en on espeak speech,
the tiny Fun-ASR-Nano for parity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from asr_serve.config import LiveConfig
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.partials import PartialScheduler
from asr_serve.live.protocols.connection import ProtocolError
from asr_serve.live.protocols.funasr_realtime_messages import language_code
from devtools.speech import Speech, pcm16
from devtools.text import wer
from tests.live.conftest import FakeTranscriber, Recorder
from tests.live.server import LiveServer, engine_transcribe
from tests.support.funasr_clients import (
    REALTIME_FRAME,
    command,
    realtime_session,
    receive_json,
)

pytestmark = pytest.mark.anyio


def _check_times(results: list[dict[str, Any]], audio_ms: int) -> None:
    for result in results:
        assert set(result) == {
            "sentences",
            "partial",
            "partial_start_ms",
            "duration_ms",
            "is_final",
        }
        assert 0 <= result["partial_start_ms"] <= result["duration_ms"] <= audio_ms
        for sentence in result["sentences"]:
            assert set(sentence) == {"text", "start", "end"}
            assert 0 <= sentence["start"] < sentence["end"] <= result["duration_ms"]
        if result["is_final"]:
            assert (result["partial"], result["partial_start_ms"]) == ("", 0)


@pytest.fixture(scope="module")
def server(whisper) -> Iterator[LiveServer]:
    with LiveServer(engine=whisper) as server:
        yield server


async def test_server_endpoints(server, speech: Speech, references) -> None:
    audio = pcm16(speech.audio, 16_000)
    results = await realtime_session(server.url("/v1/funasr/realtime"), audio, speed=2.0)
    _check_times(results, len(audio) // 32)
    *running, final = results
    assert final["is_final"] and not any(r["is_final"] for r in running)
    assert wer(references, [s["text"] for s in final["sentences"]]) <= 0.1
    # Sentences accumulate: every result holds all of them so far, in order.
    for earlier, later in zip(running, results[1:], strict=False):
        assert later["sentences"][: len(earlier["sentences"])] == earlier["sentences"]


async def test_client_endpoints_commit_each_utterance(server, speech: Speech, references) -> None:
    audio = pcm16(speech.audio, 16_000)
    # The middle of the pause, in bytes (2 per sample), on a frame's boundary.
    pause = (speech.spans[0][1] + speech.spans[1][0]) // REALTIME_FRAME * REALTIME_FRAME
    results = await realtime_session(
        server.url("/v1/funasr/realtime?endpoint_mode=client"),
        audio,
        speed=4.0,
        commit_after={pause},
    )
    _check_times(results, len(audio) // 32)
    finals = [r for r in results if r["is_final"]]
    assert len(finals) == 2  # the COMMIT's, then STOP's
    assert [len(r["sentences"]) for r in finals] == [1, 1]
    assert finals[0]["duration_ms"] == pause // 32
    assert finals[1]["duration_ms"] == len(audio) // 32
    assert finals[1]["sentences"][0]["start"] == pause // 32
    assert wer(references, [r["sentences"][0]["text"] for r in finals]) <= 0.1
    # Between commits, results carry no sentence: those come with the COMMIT's result.
    assert all(r["sentences"] == [] for r in results if not r["is_final"])


async def test_the_tiny_fun_asr_nano_says_what_it_says_for_the_same_audio(
    tiny_funasr, speech: Speech
) -> None:
    config = LiveConfig()
    recorder = Recorder(PartialScheduler(engine_transcribe(tiny_funasr), config, LiveCounters()))
    with LiveServer(transcriber=recorder, config=config) as server:
        results = await realtime_session(
            server.url("/v1/funasr/realtime"),
            pcm16(speech.audio, 16_000),
            speed=None,
            hotwords="quick brown fox, lazy dog",
        )
    expected = [r.text for r in recorder.finals_alone(tiny_funasr)]
    assert len(expected) == 2
    assert [s["text"] for s in results[-1]["sentences"]] == [t for t in expected if t]
    # Its options reached the model as the session set them.
    assert {(r.options.language, r.options.prompt) for r in recorder.finals} == {
        ("en", "quick brown fox,lazy dog")
    }


# Client mistakes, with a fake model --------------------------------------------------------


@pytest.fixture(scope="module")
def strict() -> Iterator[LiveServer]:
    config = LiveConfig(max_append_bytes=9600, idle_timeout_s=2)
    with LiveServer(transcriber=FakeTranscriber(), config=config) as server:
        yield server


async def test_results_as_the_session_goes(strict, speech: Speech) -> None:
    """With a model that answers at once, what the results hold while audio comes in."""
    audio = pcm16(speech.audio, 16_000)
    results = await realtime_session(strict.url("/v1/funasr/realtime"), audio, speed=None)
    _check_times(results, len(audio) // 32)
    *running, final = results
    # The open utterance's hypothesis, replaced as it grows (the fake says a word per 0.5 s),
    # with where its audio starts.
    partials = [r for r in running if r["partial"]]
    assert partials and any(len(r["partial"].split()) > 1 for r in partials)
    starts = {r["partial_start_ms"] for r in partials}
    assert starts == {s["start"] for s in final["sentences"]}
    # The first sentence is final while the second is spoken; the final result has both.
    assert any(len(r["sentences"]) == 1 and r["partial"] for r in running)
    assert len(final["sentences"]) == 2


async def _error(ws: ClientConnection) -> dict[str, Any]:
    message = await receive_json(ws)
    assert message["event"] == "error" and set(message) == {"event", "error", "code"}, message
    return message


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (bytes(3200), "session_not_active"),  # audio before START
        ("HELLO", "unknown_command"),
        ("START now", "unknown_command"),
        ("HOTWORDS", "unknown_command"),
        ("POSTPROCESS_HOTWORDS:a=>b", "unsupported_command"),
        ("LANGUAGE:klingon", "invalid_language"),
        ("COMMIT", "client_endpoints_required"),
        ("HOTWORDS:" + "热词," * 1400, "string_above_max_length"),  # over max_prompt_chars
        ("LANGUAGE:" + "x" * 60_000, "invalid_language"),
        ("HOTWORDS:" + "x" * 70_000, "payload_too_large"),  # over max_control_frame_bytes: unread
    ],
)
async def test_a_mistake_is_an_error_event_and_the_session_goes_on(
    strict, frame: str | bytes, code: str
) -> None:
    async with connect(strict.url("/v1/funasr/realtime")) as ws:
        await ws.send(frame)
        error = await _error(ws)
        assert error["code"] == code
        assert len(error["error"]) < 300  # nothing the client sent is echoed at length
        if code == "session_not_active":
            assert error["error"] == "Session is not active; send START first"
        assert await command(ws, "START") == {"event": "started"}


async def test_audio_mistakes_during_a_session(strict) -> None:
    async with connect(strict.url("/v1/funasr/realtime?endpoint_mode=client")) as ws:
        await ws.send("COMMIT")
        assert (await _error(ws))["code"] == "session_not_active"
        await command(ws, "start")
        await ws.send(bytes(3))  # funasr's server crashes on an odd length
        assert (await _error(ws))["code"] == "invalid_audio"
        await ws.send(bytes(9602))
        assert (await _error(ws))["code"] == "payload_too_large"
        await ws.send(bytes(9600))
        final = await command(ws, "COMMIT")
        assert final["is_final"] and final["duration_ms"] == 300  # only the good frame counts
        assert await command(ws, "STOP") == {"event": "stopped"}  # nothing pending
        await ws.send(bytes(3200))
        assert (await _error(ws))["code"] == "session_not_active"  # after STOP


async def test_start_again_starts_a_new_clock_and_stop_always_answers(strict) -> None:
    counters = strict.counters
    sessions = counters.sessions["funasr_realtime"]
    async with connect(strict.url("/v1/funasr/realtime?endpoint_mode=client")) as ws:
        assert await command(ws, "STOP") == {"event": "stopped"}
        await command(ws, "START")
        await ws.send(bytes(9600))
        await command(ws, "START")
        await ws.send(bytes(6400))
        final = await command(ws, "COMMIT")
        assert final["duration_ms"] == 200
        # Each START is a session, counted under the protocol.
        assert counters.sessions["funasr_realtime"] == sessions + 2


async def test_an_idle_connection_is_closed_and_a_bad_query_refused(strict) -> None:
    async with connect(strict.url("/v1/funasr/realtime")) as ws:
        await ws.wait_closed()
        assert (ws.close_code, ws.close_reason) == (4000, "no audio for 2 s")
    async with connect(strict.url("/v1/funasr/realtime?endpoint_mode=both")) as ws:
        assert (await _error(ws))["code"] == "invalid_value"
        await ws.wait_closed()
        assert ws.close_code == 1008


@pytest.fixture(scope="module")
def bounded() -> Iterator[LiveServer]:
    config = LiveConfig(max_result_sentences=1, max_session_audio_s=20, idle_timeout_s=1)
    with LiveServer(transcriber=FakeTranscriber(), config=config) as server:
        yield server


async def test_results_repeat_the_latest_sentences_and_stop_gives_them_all(
    bounded, speech: Speech
) -> None:
    audio = pcm16(speech.audio, 16_000)
    *running, final = await realtime_session(bounded.url("/v1/funasr/realtime"), audio, speed=None)
    assert max(len(r["sentences"]) for r in running) == 1
    assert [r["sentences"][0]["start"] for r in running if r["sentences"]][-1] > 0
    assert len(final["sentences"]) == 2 and final["is_final"]


async def test_start_again_does_not_restart_the_audio_budget(bounded) -> None:
    async with connect(bounded.url("/v1/funasr/realtime?endpoint_mode=client")) as ws:
        for frames in (40, 26):  # 12 s, then 7.8 s: 19.8 s of the connection's 20
            await command(ws, "START")
            for _ in range(frames):
                await ws.send(bytes(9600))
        await ws.send(bytes(9600))  # 0.3 s more
        while (error := await receive_json(ws)).get("event") != "error":
            pass  # the results of the audio taken, the second "started"
        assert error["code"] == "session_audio_limit"
        await ws.wait_closed()
        assert ws.close_code == 4001


async def test_empty_frames_are_not_audio(bounded) -> None:
    async with connect(bounded.url("/v1/funasr/realtime")) as ws:
        await command(ws, "START")
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            for _ in range(30):  # empty frames for up to 3 s against a 1 s idle timeout
                await ws.send(b"")
                await asyncio.sleep(0.1)
        assert ws.close_code == 4000 and time.monotonic() - started < 2


def test_languages_as_funasr_clients_name_them() -> None:
    assert language_code("EN") == "en"
    assert language_code("中文") == "zh"
    assert language_code("英文") == "en"
    assert language_code(" ") is None
    with pytest.raises(ProtocolError, match="Unknown language 'English'"):
        language_code("English")
