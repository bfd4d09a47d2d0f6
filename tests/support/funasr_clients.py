"""Clients of FunASR's two live protocols, written from their documentation and funasr's
source, for the in-process adapter tests (tests/live) and the tests through Serve (tests/e2e).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.support.realtime import chunks

#: What FunASR's own clients send first (``funasr_wss_client.py``), hints included.
RUNTIME_CONFIG = {
    "mode": "2pass",
    "chunk_size": [5, 10, 5],
    "chunk_interval": 10,
    "encoder_chunk_look_back": 4,
    "decoder_chunk_look_back": 0,
    "audio_fs": 16000,
    "wav_name": "mic",
    "wav_format": "pcm",
    "is_speaking": True,
    "hotwords": "",
    "itn": True,
}
#: 60 ms of 16 kHz PCM16: the reference clients' frame.
RUNTIME_FRAME = 1920


async def receive_json(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(await ws.recv())


async def runtime_session(
    url: str,
    audio: bytes,
    *,
    speed: float | None,
    frame: int = RUNTIME_FRAME,
    end: dict[str, Any] | None = None,
    **config: Any,
) -> list[dict[str, Any]]:
    """One input: the configuration, the audio (16 kHz PCM16, or a file) at ``speed`` times
    real time (``None``: as fast as it goes), ``{"is_speaking": false, **end}``; every
    answer until the final one."""
    messages: list[dict[str, Any]] = []
    async with asyncio.timeout(120), connect(url, subprotocols=["binary"]) as ws:
        assert ws.subprotocol == "binary"
        await ws.send(json.dumps({**RUNTIME_CONFIG, **config}))

        async def send() -> None:
            loop = asyncio.get_running_loop()
            start, sent = loop.time(), 0
            for chunk in chunks(audio, frame):
                await ws.send(chunk)
                sent += len(chunk)
                if speed is not None:
                    await asyncio.sleep(max(0.0, start + sent / 32_000 / speed - loop.time()))
            await ws.send(json.dumps({"is_speaking": False, **(end or {})}))

        sender = asyncio.create_task(send())
        while not messages or not messages[-1]["is_final"]:
            messages.append(await receive_json(ws))
        await sender
    return messages


def runtime_results(messages: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The ``mode`` messages with text: the input's final message may be an empty one of its
    own, when its utterances were all done before the input ended."""
    return [m for m in messages if m.get("mode") == mode and m["text"]]


def check_runtime_final(messages: list[dict[str, Any]], results: list[dict[str, Any]]) -> None:
    """Exactly one final message, the last: the last utterance's result, or an empty one."""
    assert [m["is_final"] for m in messages] == [False] * (len(messages) - 1) + [True]
    assert messages[-1] is results[-1] or messages[-1]["text"] == ""


#: 100 ms of 16 kHz PCM16, as funasr's benchmark client sends.
REALTIME_FRAME = 3200


async def command(ws: ClientConnection, text: str) -> dict[str, Any]:
    await ws.send(text)
    return await receive_json(ws)


class RealtimeClient:
    """A client of the protocol: commands, audio at a pace, and every message it gets."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    async def stream(self, audio: bytes, *, speed: float | None, commit_after: set[int]) -> None:
        """Send ``audio`` at ``speed`` times real time, COMMIT after the byte offsets given."""
        loop = asyncio.get_running_loop()
        start, sent = loop.time(), 0
        for chunk in chunks(audio, REALTIME_FRAME):
            await self.ws.send(chunk)
            sent += len(chunk)
            if sent in commit_after:
                await self.ws.send("COMMIT")
            if speed is not None:
                await asyncio.sleep(max(0.0, start + sent / 32_000 / speed - loop.time()))

    async def until(self, event: str) -> None:
        """Collect messages until one with ``"event": event``."""
        while not self.messages or self.messages[-1].get("event") != event:
            self.messages.append(await receive_json(self.ws))

    @property
    def results(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if "sentences" in m]


async def realtime_session(
    url: str,
    audio: bytes,
    *,
    speed: float | None,
    commit_after: set[int] = frozenset(),
    hotwords: str = "",
    language: str = "en",
) -> list[dict[str, Any]]:
    """LANGUAGE, HOTWORDS, START, the audio, STOP: every result until ``stopped``."""
    async with asyncio.timeout(120), connect(url) as ws:
        answer = await command(ws, f"LANGUAGE:{language}")
        assert answer == {"event": "language_set", "language": language}
        words = [w.strip() for w in hotwords.split(",") if w.strip()]
        answer = await command(ws, f"hotwords:{hotwords}")  # names are case-insensitive
        assert answer == {"event": "hotwords_set", "hotwords": words}
        assert await command(ws, "START") == {"event": "started"}
        session = RealtimeClient(ws)
        sender = asyncio.create_task(session.stream(audio, speed=speed, commit_after=commit_after))
        reader = asyncio.create_task(session.until("stopped"))
        await sender
        await ws.send("STOP")
        await reader
    assert session.messages[-1] == {"event": "stopped"}
    assert not [m for m in session.messages if "event" in m and m["event"] != "stopped"]
    return session.results
