"""Driving a live session with the official ``openai`` SDK, and checking what it got.

Shared by the in-process adapter tests (tests/live) and the tests through real Serve
(tests/e2e/test_realtime.py): the SDK's ``client.realtime.connect`` as a user calls it.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import Any

from openai import AsyncOpenAI

from devtools.conversation import Conversation
from devtools.speech import pcm16
from devtools.text import word_errors

COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def client_for(base_url: str, api_key: str = "sk-test") -> AsyncOpenAI:
    """An SDK client for ``http://host:port[/prefix]``; the WebSocket URL set explicitly,
    which every SDK version honours (older ones would otherwise try wss://)."""
    return AsyncOpenAI(
        api_key=api_key,
        base_url=f"{base_url}/v1",
        websocket_base_url=f"{base_url.replace('http://', 'ws://', 1)}/v1",
    )


async def stream_with_sdk(
    client: AsyncOpenAI,
    model: str,
    audio: bytes,
    *,
    chunk_ms: int,
    speed: float | None,
    session: dict[str, Any],
    commit_after: Sequence[int] = (),
    items: int = 2,
    timeout_s: float = 90.0,
    until: Callable[[list[Any]], bool] | None = None,
) -> list[Any]:
    """Stream ``audio`` (24 kHz PCM16) at ``speed`` times real time (``None``: as fast as it
    goes) and collect the events until ``items`` transcriptions completed (or, given
    ``until``, until it holds for the events so far).
    ``commit_after``: byte offsets after which the client commits (manual turns)."""
    done = until or (lambda events: sum(e.type == COMPLETED for e in events) == items)
    events: list[Any] = []
    async with (
        asyncio.timeout(timeout_s),
        client.realtime.connect(model=model, extra_query={"intent": "transcription"}) as conn,
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
            if done(events):
                break
        await sender
    return events


def _check_deltas(deltas: list[str], transcript: str) -> None:
    """What docs/live.md promises of an item's deltas: append-only text the final extends,
    its rest sent as a last delta; or, where the model revised a word of them on the whole
    utterance's audio (Whisper may, from words two partials agreed on), a final that replaces
    them, which begins with the same words but at most one."""
    sent = "".join(deltas)
    if transcript.startswith(sent):
        assert sent == transcript, (deltas, transcript)  # the rest came as a last delta
        return
    head = " ".join(transcript.split()[: len(sent.split())])
    assert word_errors(sent, head) <= 1, (deltas, transcript)


def check_items(events: list[Any], references: list[str], *, vad: bool) -> dict[str, list]:
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
        _check_deltas([e.delta for e in by_item[item] if e.type == DELTA], completed.transcript)
        assert completed.usage.type == "duration" and completed.usage.seconds > 1
        finals.append(completed.transcript)
    # The live cut (VAD boundaries) is not the file's (fixed padding): Whisper may hear an
    # unsure word differently ("jump"/"jumps"), so one word per sentence may differ.
    for reference, final in zip(references, finals, strict=True):
        assert word_errors(reference, final) <= 1, (reference, final)
    return by_item


SEGMENT = "conversation.item.input_audio_transcription.segment"


async def speaker_session(base_url: str, model: str, talk: Conversation) -> list[Any]:
    """A conversation streamed into a diarizing session (``<model>-diarize``, server VAD)
    at three times real time (faster, a session's finals in flight reach
    ``live.max_finals_in_flight`` and its audio is refused): its events, until every item
    up to the last sentence completed (segment events, with ``speaker``, are
    :data:`SEGMENT`)."""
    last = talk.turns[-1]

    def heard_all(events: list[Any]) -> bool:
        segments = [e for e in events if e.type == SEGMENT]
        completed = sum(e.type == COMPLETED for e in events)
        past_last = bool(segments) and segments[-1].end > (last.start + last.end) / 2
        return past_last and completed == len(segments)

    return await stream_with_sdk(
        client_for(base_url),
        f"{model}-diarize",
        pcm16(talk.audio, 24_000),
        chunk_ms=100,
        speed=3.0,
        session={"type": "transcription"},
        timeout_s=60 + 4 * talk.duration_s,
        until=heard_all,
    )
