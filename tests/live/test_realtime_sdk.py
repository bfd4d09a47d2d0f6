"""The real path in one process: the openai SDK's realtime client, exactly as a user runs it,
over a real WebSocket (uvicorn) to the adapter, the core and the embedded Whisper tiny.en.

Speech is espeak's, two sentences with a pause, streamed as 24 kHz PCM16. The live finals
must say exactly what the same engine says for the audio the session sent it, and what it
says for the sentences as a file, within a word (the cuts differ).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from asr_serve.config import LiveConfig
from asr_serve.live.metrics import LiveCounters
from asr_serve.live.partials import PartialScheduler
from devtools.speech import pcm16
from tests.live.conftest import Recorder
from tests.live.server import WHISPER, LiveServer, engine_transcribe
from tests.support.realtime import COMPLETED, DELTA, check_items, client_for, stream_with_sdk

pytestmark = pytest.mark.anyio


@pytest.fixture
def counters() -> LiveCounters:
    return LiveCounters()


@pytest.fixture
def recorder(whisper, counters) -> Recorder:
    """The replica's scheduler over the engine, keeping each final's audio."""
    config = LiveConfig(max_partials_in_flight=1)
    return Recorder(PartialScheduler(engine_transcribe(whisper), config, counters))


@pytest.fixture
def server(recorder) -> Iterator[LiveServer]:
    with LiveServer(transcriber=recorder) as server:
        yield server


async def _transcribe(server: LiveServer, audio: bytes, **kwargs: Any) -> list[Any]:
    client = client_for(f"http://127.0.0.1:{server.port}")
    return await stream_with_sdk(client, WHISPER, audio, **kwargs)


def _assert_finals_are_the_engines(events: list[Any], recorder: Recorder, whisper) -> None:
    finals = [e.transcript for e in events if e.type == COMPLETED]
    assert finals == [r.text for r in recorder.finals_alone(whisper)]


async def test_server_vad_at_real_time_pace_with_partials(
    server, recorder, counters, whisper, speech, references
) -> None:
    events = await _transcribe(
        server,
        pcm16(speech.audio, 24_000),
        chunk_ms=20,
        speed=1.0,
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
    )
    by_item = check_items(events, references, vad=True)
    _assert_finals_are_the_engines(events, recorder, whisper)
    # The long sentence's text starts arriving before its speaker has finished.
    long_item = list(by_item.values())[1]
    kinds = [e.type for e in long_item]
    assert DELTA in kinds[: kinds.index("input_audio_buffer.speech_stopped")]
    assert counters.latency["partial"].count > 0


async def test_server_vad_faster_than_real_time(
    server, recorder, whisper, speech, references
) -> None:
    events = await _transcribe(
        server, pcm16(speech.audio, 24_000), chunk_ms=100, speed=None, session={}
    )
    check_items(events, references, vad=True)
    _assert_finals_are_the_engines(events, recorder, whisper)


async def test_manual_commits(server, recorder, whisper, speech, references) -> None:
    pcm = pcm16(speech.audio, 24_000)
    # Commit in the pause after the first sentence, and at the end.
    pause = (speech.spans[0][1] + speech.spans[1][0]) // 2 * 3  # bytes of 24 kHz PCM16
    pause -= pause % (48 * 50)
    events = await _transcribe(
        server,
        pcm,
        chunk_ms=50,
        speed=4.0,
        session={"type": "transcription", "audio": {"input": {"turn_detection": None}}},
        commit_after=[pause, len(pcm)],
    )
    assert not any(e.type.startswith("input_audio_buffer.speech") for e in events)
    check_items(events, references, vad=False)
    _assert_finals_are_the_engines(events, recorder, whisper)
