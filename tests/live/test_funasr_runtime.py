"""FunASR's runtime protocol end to end: a client written from ``websocket_protocol.md`` (with
the ``websockets`` library) over a real WebSocket (uvicorn) to the adapter, the core and the
real engine: Whisper tiny.en on espeak speech, the tiny Fun-ASR-Nano for parity.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from asr_serve.config import LiveConfig, SplittingConfig
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.partials import PartialScheduler
from asr_serve.live.protocols.funasr_runtime_messages import ClientFrame
from devtools.speech import Speech, encode, pcm16
from devtools.text import normalize, wer, word_errors
from tests.live.conftest import SR, FakeTranscriber, Recorder
from tests.live.server import LiveServer, engine_transcribe
from tests.support.funasr_clients import (
    RUNTIME_CONFIG,
    check_runtime_final,
    receive_json,
    runtime_results,
    runtime_session,
)
from tests.support.realtime import chunks

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def server(whisper) -> Iterator[LiveServer]:
    """Whisper behind the doors; a whole file longer than 8 s is split at its pauses."""
    with LiveServer(engine=whisper, splitting=SplittingConfig(max_piece_s=8)) as server:
        yield server


async def test_2pass(server, speech: Speech, references) -> None:
    audio = pcm16(speech.audio, 16_000)
    messages = await runtime_session(server.url("/v1/funasr/ws"), audio, speed=2)
    assert {m["wav_name"] for m in messages} == {"mic"}
    assert {m["mode"] for m in messages} <= {"2pass-online", "2pass-offline"}
    offline = runtime_results(messages, "2pass-offline")
    check_runtime_final(messages, offline)
    assert wer(references, [m["text"] for m in offline]) <= 0.1, (references, offline)
    # Online text, where the machine had time for it, is what the offline text then says.
    start = 0
    for result in offline:
        end = messages.index(result)
        online = normalize("".join(m["text"] for m in messages[start:end]))
        final = normalize(result["text"])[: len(online)]
        assert word_errors(" ".join(online), " ".join(final)) <= 1, (online, final)
        start = end + 1
    # Word timings, as the runtime sends them: a JSON string of [start_ms, end_ms] per word.
    for result, (begin, finish) in zip(offline, speech.spans, strict=True):
        pairs = json.loads(result["timestamp"])
        assert len(pairs) == len(result["text"].split())
        assert all(s <= e for s, e in pairs) and pairs == sorted(pairs)
        assert abs(pairs[0][0] - begin / 16) < 400 and abs(pairs[-1][1] - finish / 16) < 400
        [sentence] = result["stamp_sents"]
        assert sentence["ts_list"] == pairs
        assert normalize(sentence["text_seg"]) == normalize(result["text"])
        assert (sentence["start"], sentence["end"]) == (pairs[0][0], pairs[-1][1])


async def test_2pass_online_text_grows_then_the_offline_text_replaces_it(
    strict, speech: Speech
) -> None:
    """With a model that answers at once (a word per 0.5 s of audio), the message flow."""
    messages = await runtime_session(
        strict.url("/v1/funasr/ws"), pcm16(speech.audio, 16_000), speed=None, frame=9600
    )
    offline = runtime_results(messages, "2pass-offline")
    assert len(offline) == 2
    check_runtime_final(messages, offline)
    start = 0
    for result in offline:
        end = messages.index(result)
        online = messages[start:end]
        assert online and {m["mode"] for m in online} == {"2pass-online"}
        assert result["text"].startswith("".join(m["text"] for m in online))
        assert "timestamp" not in result  # the fake gives no word timings
        start = end + 1


@pytest.mark.parametrize("mode", ["online", "offline"])
async def test_online_and_offline_modes(server, speech: Speech, references, mode: str) -> None:
    messages = await runtime_session(
        server.url("/v1/funasr/ws"), pcm16(speech.audio, 16_000), speed=None, mode=mode
    )
    assert {m["mode"] for m in messages} == {mode}
    results = runtime_results(messages, mode)
    check_runtime_final(messages, results)
    text = "".join(m["text"] for m in results)
    assert wer([" ".join(references)], [text]) <= 0.1, (references, text)
    if mode == "offline":
        assert len(results) == 2 and all("timestamp" in m for m in results)
    else:
        assert not any("timestamp" in m for m in messages)


async def test_a_whole_wav_file_is_one_result_on_the_file_time_line(
    server, speech: Speech, references
) -> None:
    """A file takes a file request's path: decoded, split at the pause between its two
    sentences (each longer than half the 8 s pieces), the pieces transcribed and stitched
    into one result, its input's final message, word timings on the file's time line."""
    wav = encode(speech.audio, 16_000, "wav")
    messages = await runtime_session(
        server.url("/v1/funasr/ws"),
        wav,
        speed=None,
        frame=65_536,
        mode="offline",
        wav_format="wav",
        audio_fs=8000,  # the file's own rate wins
        end={"is_end": True},
    )
    [result] = messages
    assert (result["mode"], result["is_final"], result["is_end"]) == ("offline", True, True)
    assert wer([" ".join(references)], [result["text"]]) <= 0.1, (references, result["text"])
    words = json.loads(result["timestamp"])
    assert len(words) > 2 and words == sorted(words)
    # The second piece's words are placed after its offset in the file, not from 0.
    second_ms = speech.spans[1][0] * 1000 // SR
    starts = [s["start"] for s in result["stamp_sents"]]
    assert starts[0] < second_ms - 500 < starts[-1], (second_ms, starts)


async def test_the_tiny_fun_asr_nano_says_what_it_says_for_the_same_audio(
    tiny_funasr, speech: Speech
) -> None:
    config = LiveConfig()
    recorder = Recorder(PartialScheduler(engine_transcribe(tiny_funasr), config, LiveCounters()))
    with LiveServer(transcriber=recorder, config=config) as server:
        messages = await runtime_session(
            server.url("/v1/funasr/ws"), pcm16(speech.audio, 16_000), speed=None
        )
    offline = [m["text"] for m in runtime_results(messages, "2pass-offline")]
    check_runtime_final(messages, runtime_results(messages, "2pass-offline"))
    expected = [r.text for r in recorder.finals_alone(tiny_funasr)]
    assert len(expected) == 2 and offline == [t for t in expected if t]


# Client mistakes, with a fake model --------------------------------------------------------


@pytest.fixture(scope="module")
def strict() -> Iterator[LiveServer]:
    config = LiveConfig(max_append_bytes=9600, max_file_bytes=20_000)
    with LiveServer(transcriber=FakeTranscriber(), config=config) as server:
        yield server


async def _connect(server: LiveServer, query: str = "") -> ClientConnection:
    return await connect(server.url(f"/v1/funasr/ws{query}"))


async def _error(ws: ClientConnection) -> dict[str, Any]:
    message = await receive_json(ws)
    assert set(message) == {"wav_name", "text", "is_final", "error", "code"}, message
    assert message["text"] == "" and message["is_final"] is False
    return message


async def _assert_usable(ws: ClientConnection, **config: Any) -> None:
    """The connection still transcribes: one second of audio, then the input's end."""
    await ws.send(json.dumps({**RUNTIME_CONFIG, "mode": "offline", **config}))
    await ws.send(bytes(9600))
    await ws.send(json.dumps({"is_speaking": False}))
    final = await receive_json(ws)
    assert final["is_final"] is True and final["mode"] == "offline"


@pytest.mark.parametrize(
    ("frame", "code", "param"),
    [
        ("not json", "invalid_json", None),
        ("[1, 2]", "invalid_json", None),
        (b"\x00\x01", "configuration_required", None),
        ('{"mode": "3pass"}', "invalid_value", "mode"),
        ('{"audio_fs": 4000}', "invalid_value", "audio_fs"),
        ('{"hotwords": 7}', "invalid_value", "hotwords"),
        # Caps: each refused by name (in the message: this protocol's errors have no param),
        # the frame before the parser when it is too large or too deep.
        (json.dumps({"wav_name": "w" * 257}), "string_above_max_length", "wav_name"),
        (json.dumps({"hotwords": "热词," * 1400}), "string_above_max_length", "hotwords"),
        (json.dumps({"svs_lang": "x" * 33}), "string_above_max_length", "svs_lang"),
        (json.dumps({"wav_name": "w" * 2_000_000}), "payload_too_large", None),
        ("[" * 1000, "invalid_json", None),
    ],
)
async def test_a_bad_first_frame_is_an_error_and_the_connection_goes_on(
    strict, frame: str | bytes, code: str, param: str | None
) -> None:
    async with await _connect(strict) as ws:
        await ws.send(frame)
        error = await _error(ws)
        assert (error["code"], error["wav_name"]) == (code, "wav-default-id")
        assert param is None or param in error["error"]
        assert len(error["error"]) < 300  # nothing the client sent is echoed at length
        await _assert_usable(ws)


async def test_audio_mistakes_are_errors_and_change_nothing(strict) -> None:
    async with await _connect(strict) as ws:
        await ws.send(json.dumps(RUNTIME_CONFIG))
        await ws.send(bytes(9601))
        assert (await _error(ws))["code"] == "payload_too_large"
        await ws.send(bytes(3))
        error = await _error(ws)
        assert error["code"] == "invalid_audio" and error["wav_name"] == "mic"
        await ws.send(bytes(3200))
        await ws.send(json.dumps({"audio_fs": 8000}))
        assert (await _error(ws))["code"] == "invalid_value"  # not in the middle of an input
        await _assert_usable(ws)


async def test_an_input_without_speech_still_ends_with_one_final_message(strict) -> None:
    async with await _connect(strict) as ws:
        await ws.send(json.dumps(RUNTIME_CONFIG))
        await ws.send(bytes(3200))
        await ws.send(json.dumps({"is_speaking": False, "is_end": True}))
        final = await receive_json(ws)
        assert final == {
            "mode": "2pass-offline",
            "wav_name": "mic",
            "text": "",
            "is_final": True,
            "is_end": True,
        }


async def test_file_mistakes_are_errors_and_the_input_still_ends(strict) -> None:
    async with await _connect(strict) as ws:
        file = {**RUNTIME_CONFIG, "mode": "offline", "wav_format": "mp3"}
        await ws.send(json.dumps(file))
        await ws.send(b"these are not audio samples" * 10)
        await ws.send(json.dumps({"is_speaking": False}))
        assert (await _error(ws))["code"] == "invalid_audio"
        assert (await receive_json(ws))["is_final"] is True
        await ws.send(json.dumps(file))
        for _ in range(3):
            await ws.send(bytes(9000))
        assert (await _error(ws))["code"] == "payload_too_large"
        await ws.send(json.dumps({"is_speaking": False}))
        assert (await receive_json(ws))["is_final"] is True
        await _assert_usable(ws, wav_format="pcm")


async def test_an_unknown_model_is_refused_and_closed(strict) -> None:
    async with await _connect(strict, "?model=nope") as ws:
        error = await _error(ws)
        assert error["code"] == "model_not_found"
        await ws.wait_closed()
        assert ws.close_code == 1008


def test_hotwords_as_the_runtime_sends_them() -> None:
    assert ClientFrame(hotwords='{"阿里巴巴": 20, "达摩院": 10}').hotwords == ("阿里巴巴", "达摩院")
    assert ClientFrame(hotwords="quick brown fox, lazy dog").hotwords == (
        "quick brown fox",
        "lazy dog",
    )
    assert ClientFrame(hotwords="阿里巴巴 达摩院").hotwords == ("阿里巴巴", "达摩院")
    # JSON text nested too deep for an object of words is words, never a RecursionError.
    assert ClientFrame(hotwords="[" * 60_000).hotwords == ("[" * 60_000,)
    assert ClientFrame(hotwords="").hotwords == ()


async def test_inputs_one_after_another_each_end_with_their_own_final(strict, speech) -> None:
    pcm = pcm16(speech.sentence(0), 16_000)
    sessions = strict.counters.sessions["funasr_runtime"]
    async with await _connect(strict) as ws:
        # The second input starts before the first one's result is back.
        for name in ("a.wav", "b.wav"):
            await ws.send(json.dumps({**RUNTIME_CONFIG, "mode": "offline", "wav_name": name}))
            for chunk in chunks(pcm, 9600):
                await ws.send(chunk)
            await ws.send(json.dumps({"is_finished": True}))
        first, second = await receive_json(ws), await receive_json(ws)
    assert (first["wav_name"], second["wav_name"]) == ("a.wav", "b.wav")
    assert first["is_final"] and second["is_final"]
    assert first["text"] == second["text"] and first["text"].startswith("w0 w1")
    # One connection is one session, counted under its protocol.
    assert strict.counters.sessions["funasr_runtime"] == sessions + 1
