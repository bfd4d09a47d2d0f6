"""The real path in one process: the openai SDK's realtime client, exactly as a user runs it,
over a real WebSocket (uvicorn) to the adapter, the core and the embedded Whisper tiny.en.

Speech is espeak's, two sentences with a pause, streamed as 24 kHz PCM16. The live finals
must say what the same engine says for the same audio as a file.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import pytest
from openai import AsyncOpenAI

from asr_serve.testing.text import wer
from tests.live.conftest import chunks, pcm16
from tests.live.server import WHISPER, LiveServer

pytestmark = pytest.mark.anyio

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


@pytest.fixture(scope="module")
def server(whisper) -> Iterator[LiveServer]:
    with LiveServer(engine=whisper) as server:
        yield server


async def _transcribe(
    server: LiveServer,
    audio: bytes,
    *,
    chunk_ms: int,
    speed: float | None,
    session: dict[str, Any],
    commit_after: list[int] = (),
    items: int = 2,
) -> list[Any]:
    """Stream ``audio`` (24 kHz PCM16) with the SDK at ``speed`` times real time (``None``:
    as fast as it goes) and collect the events until ``items`` transcriptions completed.
    ``commit_after``: byte offsets after which the client commits (manual turns)."""
    client = AsyncOpenAI(
        api_key="sk-test",
        base_url=f"http://127.0.0.1:{server.port}/v1",
        websocket_base_url=f"ws://127.0.0.1:{server.port}/v1",
    )
    events: list[Any] = []
    async with (
        asyncio.timeout(90),
        client.realtime.connect(model=WHISPER, extra_query={"intent": "transcription"}) as conn,
    ):
        await conn.session.update(session=session)

        async def send() -> None:
            loop = asyncio.get_running_loop()
            start, sent = loop.time(), 0
            for chunk in chunks(audio, 48 * chunk_ms):
                await conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
                sent += len(chunk)
                if sent in commit_after:
                    await conn.input_audio_buffer.commit()
                if speed is not None:
                    await asyncio.sleep(max(0.0, start + sent / 48_000 / speed - loop.time()))

        sender = asyncio.create_task(send())
        async for event in conn:
            events.append(event)
            assert event.type != "error", event
            if sum(e.type == COMPLETED for e in events) == items:
                break
        await sender
    return events


def _check_items(events: list[Any], references: list[str], *, vad: bool) -> dict[str, list]:
    """Per item: the events in order, chained, and a final the file transcript agrees with."""
    committed = [e for e in events if e.type == "input_audio_buffer.committed"]
    ids = [e.item_id for e in committed]
    assert len(ids) == len(references) == len(set(ids))
    assert [e.previous_item_id for e in committed] == [None, *ids[:-1]]
    by_item: dict[str, list] = {item: [] for item in ids}
    for event in events:
        if getattr(event, "item_id", None) in by_item:
            by_item[event.item_id].append(event)
    finals = []
    for item in ids:
        kinds = [e.type for e in by_item[item] if e.type != DELTA]
        expected = ["input_audio_buffer.committed", COMPLETED]
        if vad:
            expected = [
                "input_audio_buffer.speech_started",
                "input_audio_buffer.speech_stopped",
                *expected,
            ]
        assert kinds == expected
        completed = by_item[item][-1]
        deltas = "".join(e.delta for e in by_item[item] if e.type == DELTA)
        assert completed.transcript.startswith(deltas)
        assert completed.usage.type == "duration" and completed.usage.seconds > 1
        finals.append(completed.transcript)
    for reference, final in zip(references, finals, strict=True):
        assert wer([reference], [final]) <= 0.1, (reference, final)
    return by_item


async def test_server_vad_at_real_time_pace_with_partials(server, speech, references) -> None:
    events = await _transcribe(
        server,
        pcm16(speech.audio, 24_000),
        chunk_ms=20,
        speed=1.0,
        session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm"}}}},
    )
    by_item = _check_items(events, references, vad=True)
    # The long sentence's text starts arriving before its speaker has finished.
    long_item = list(by_item.values())[1]
    kinds = [e.type for e in long_item]
    assert DELTA in kinds[: kinds.index("input_audio_buffer.speech_stopped")]
    assert server.counters.latency["partial"].count > 0


async def test_server_vad_faster_than_real_time(server, speech, references) -> None:
    events = await _transcribe(
        server, pcm16(speech.audio, 24_000), chunk_ms=100, speed=None, session={}
    )
    _check_items(events, references, vad=True)


async def test_manual_commits(server, speech, references) -> None:
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
    _check_items(events, references, vad=False)
