"""Abusive live clients through real Serve, with ordinary clients measured beside them.

Each case is what a hostile client of issue 24 did to the live doors and their logs: output
it never reads, a result that repeats a whole session, a megabyte prompt, JSON nested
200,000 deep, slots held by empty appends or a trickle of audio, forged log lines, a flood
of failed partials, a foreign page's browser. Each runs inside :func:`_beside`, which holds
every case to the same promises: the abusive client gets its documented error or close code,
ordinary file requests sent meanwhile all get 200 within 3x their P95 alone (measured just
before it: the machine is shared), the Ingress keeps no memory for it (tracemalloc, as the
vanishing-clients test asks), and no replica logs an ERROR or a traceback.

One application: Whisper tiny.en, keys off (so the Origin check is what stands between a
web page and the doors), the shipped output bounds, and short session bounds so the slot
cases are quick.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from devtools.speech import Speech, encode, pcm16, speech_with_pauses
from devtools.text import SENTENCES
from tests.e2e.serving import WHISPER, deploy, undeploy, whisper_model
from tests.support.funasr_clients import RUNTIME_CONFIG, command, realtime_session
from tests.support.normal_clients import NormalClients, p95
from tests.support.replica_logs import LogWindow, records, tracebacks
from tests.support.replica_probe import replica_actors, retained, start_tracing

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

APP = "abuse_live"
ORIGIN = "https://app.example.com"
MAX_SESSIONS = 64
IDLE_S = 6.0
SESSION_S = 20.0
LIVE = {
    "max_sessions": MAX_SESSIONS,
    "idle_timeout_s": IDLE_S,
    "max_session_s": SESSION_S,
    "max_result_sentences": 2,
    # Partials every 2 s of speech, not 0.5: on one CPU Whisper replica a session's partials
    # take the model's time from the file requests beside it, which is the fair share's to
    # bound (issue 24, items 2 and 3), not these cases' (tests/README.md has the figures).
    "partial_interval_s": 2.0,
}
#: Ordinary file requests beside an abusive client: at most this many times their P95 alone,
#: measured over this many requests just before the case.
MAX_SLOWDOWN = 3.0
ALONE_REQUESTS = 6
#: What the Ingress may still hold after a case (first-use caches, Serve's bookkeeping); the
#: unbounded outbox kept hundreds of MiB for the flood below.
MAX_RETAINED_MIB = 4.0
#: Bad events the flooding client sends: each is answered by an error of ~650 bytes, ~13 MB
#: in all, far more than ``max_outbox_bytes`` (1 MiB) at the shipped send rate.
FLOOD_EVENTS = 20_000
#: Sessions the slot cases open at once (a burst of handshakes is the proxy's to bear).
CONNECTS_AT_ONCE = 8


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def base_url(serve_url: str) -> Iterator[str]:
    args = {"models": [whisper_model()], "live": LIVE, "cors": {"allow_origins": [ORIGIN]}}
    yield f"{serve_url}{deploy(APP, args)}"
    undeploy(APP)


@pytest.fixture(scope="module")
def speech() -> Speech:
    return speech_with_pauses(list(SENTENCES[:4]), pause_s=1.0)


@pytest.fixture(scope="module")
def normal_wav(speech: Speech) -> bytes:
    return encode(speech.sentence(0), 16_000, "wav")


def _ws(base_url: str, path: str, query: str = "") -> str:
    return base_url.replace("http://", "ws://", 1) + path + query


@pytest.fixture(scope="module")
def warm(base_url: str, normal_wav: bytes, speech: Speech) -> None:
    """Every door used once, so first imports and caches are not what a case leaves behind."""
    NormalClients.alone(f"{base_url}/v1/audio/transcriptions", normal_wav, 3)

    async def warm_up() -> None:
        audio = pcm16(speech.sentence(0), 16_000)
        await realtime_session(_ws(base_url, "/v1/funasr/realtime"), audio, speed=None)
        async with await websockets.connect(_ws(base_url, "/v1/funasr/ws")) as ws:
            await ws.send(json.dumps(RUNTIME_CONFIG))
            await ws.send(b"\x00")
            await ws.recv()
        async with await _realtime(base_url) as ws:
            await _send_event(ws, {"type": "input_audio_buffer.append", "audio": "AA=="})
            await _next(ws, "error")

    asyncio.run(warm_up())


@contextlib.asynccontextmanager
async def _beside(base_url: str, normal_wav: bytes) -> AsyncIterator[None]:
    """Run a case with ordinary clients beside it, after measuring them alone (just before:
    the machine is shared), then hold it to the promises above."""
    url = f"{base_url}/v1/audio/transcriptions"
    alone = p95(await asyncio.to_thread(NormalClients.alone, url, normal_wav, ALONE_REQUESTS))
    window = LogWindow(APP)
    (ingress,) = replica_actors(APP, "Ingress")
    start_tracing(ingress)
    normal = NormalClients(url, normal_wav)
    with normal:
        yield
    kept = retained(ingress)
    logs = window.read()
    during = p95(normal.latencies)
    print(
        f"beside it: {len(normal.results)} file requests, P95 {during:.2f} s against "
        f"{alone:.2f} s alone; the Ingress kept {kept.mib:.2f} MiB"
    )
    assert normal.statuses == {200}, normal.results
    assert during <= MAX_SLOWDOWN * alone, (alone, normal.latencies)
    assert kept.mib < MAX_RETAINED_MIB, kept
    for name, text in logs.items():
        assert not records(text, "ERROR") and not tracebacks(text), (name, text[-3000:])


async def _realtime(base_url: str, **kwargs: Any) -> ClientConnection:
    ws = await websockets.connect(
        _ws(base_url, "/v1/realtime", f"?intent=transcription&model={WHISPER}"), **kwargs
    )
    await _next(ws, "session.created")
    return ws


async def _send_event(ws: ClientConnection, event: dict[str, Any]) -> None:
    await ws.send(json.dumps(event))


async def _next(ws: ClientConnection, kind: str, timeout_s: float = 30.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout_s):
        while (event := json.loads(await ws.recv()))["type"] != kind:
            pass
    return event


async def _everything_until_closed(ws: ClientConnection, timeout_s: float = 60.0) -> list[Any]:
    messages = []
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            while True:
                messages.append(json.loads(await ws.recv()))
    return messages


async def test_a_long_wav_name_and_one_byte_frames_never_read_cost_little(
    base_url, normal_wav, warm
) -> None:
    """The issue's client: a 2 MB ``wav_name``, then 300 one-byte frames, each an error
    that echoed the name, and no reading. The name is refused (a frame that large before it
    is parsed; a long one under that by name), so each error is small."""
    async with (
        _beside(base_url, normal_wav),
        await websockets.connect(_ws(base_url, "/v1/funasr/ws")) as ws,
    ):
        await ws.send(json.dumps({**RUNTIME_CONFIG, "wav_name": "w" * 2_000_000}))
        await ws.send(json.dumps({**RUNTIME_CONFIG, "wav_name": "w" * 300}))
        await ws.send(json.dumps({**RUNTIME_CONFIG, "wav_name": "abuse"}))
        for _ in range(300):
            await ws.send(b"\x00")
        await asyncio.sleep(3)  # not reading
        messages = [json.loads(await ws.recv()) for _ in range(302)]
    too_large, too_long, *errors = messages
    assert too_large["code"] == "payload_too_large"
    assert too_long["code"] == "string_above_max_length" and "wav_name" in too_long["error"]
    assert too_large["wav_name"] == too_long["wav_name"] == "wav-default-id"
    assert {(e["code"], e["wav_name"]) for e in errors} == {("invalid_audio", "abuse")}
    assert sum(len(json.dumps(m)) for m in messages) < 100_000


async def test_a_client_that_makes_output_faster_than_it_reads_is_closed_with_4002(
    base_url, normal_wav, warm
) -> None:
    """Bad events each answered with an error echoing the longest ``event_id`` allowed,
    sent far faster than ``send_rate_bytes_s`` and never read: ``max_outbox_bytes`` fills,
    the connection is closed with 4002 and what waited is dropped, not parked in the
    replica or the proxy."""
    event = json.dumps({"type": "t" * 80, "event_id": "e" * 256})
    async with _beside(base_url, normal_wav):
        ws = await _realtime(base_url)
        started = time.monotonic()
        with contextlib.suppress(websockets.ConnectionClosed):
            for _ in range(FLOOD_EVENTS):
                await ws.send(event)
        await asyncio.sleep(2)  # still not reading
        messages = await _everything_until_closed(ws)  # only now does it read
        elapsed = time.monotonic() - started
    size = sum(len(json.dumps(m)) for m in messages)
    print(
        f"flood: {len(messages)} of {FLOOD_EVENTS} errors ({size} bytes) reached the client, "
        f"closed {ws.close_code} after {elapsed:.1f} s"
    )
    assert ws.close_code == 4002 and ws.close_reason == "client not reading"
    assert {m["error"]["code"] for m in messages} == {"invalid_event_type"}
    assert len(messages) < FLOOD_EVENTS  # the rest was dropped


async def test_realtime_results_repeat_a_bounded_number_of_sentences(
    base_url, normal_wav, warm
) -> None:
    """funasr's realtime door in server endpoint mode repeated every sentence since START
    in every result: output that grows with the square of the session. Results now repeat
    the latest ``max_result_sentences``; STOP's result has them all. Short sentences at real
    time, as a microphone sends them."""
    short = speech_with_pauses([SENTENCES[i] for i in (1, 3, 4, 7)], pause_s=1.0)
    audio = pcm16(short.audio, 16_000)
    async with _beside(base_url, normal_wav):
        results = await realtime_session(
            _ws(base_url, "/v1/funasr/realtime", f"?model={WHISPER}"), audio, speed=1.0
        )
    *running, final = results
    assert final["is_final"] and len(final["sentences"]) >= 3
    assert max(len(r["sentences"]) for r in running) == 2


async def test_a_megabyte_prompt_is_refused_by_name_and_the_session_goes_on(
    base_url, normal_wav, warm
) -> None:
    prompt = "hotword, " * 133_000  # 1.2 MB
    async with _beside(base_url, normal_wav):
        async with await _realtime(base_url) as ws:
            session = {"type": "transcription", "audio": {"input": {"transcription": {}}}}
            session["audio"]["input"]["transcription"]["prompt"] = prompt
            await _send_event(ws, {"type": "session.update", "session": session})
            error = (await _next(ws, "error"))["error"]
            assert error["code"] == "string_above_max_length"
            assert error["param"] == "session.audio.input.transcription.prompt"
            session["audio"]["input"]["transcription"]["prompt"] = "hotword"
            await _send_event(ws, {"type": "session.update", "session": session})
            updated = await _next(ws, "session.updated")
            assert updated["session"]["audio"]["input"]["transcription"]["prompt"] == "hotword"
        async with await websockets.connect(_ws(base_url, "/v1/funasr/realtime")) as ws:
            assert (await command(ws, "HOTWORDS:" + prompt))["code"] == "payload_too_large"
            assert (await command(ws, "HOTWORDS:" + "热词," * 1400))["code"] == (
                "string_above_max_length"
            )
            assert await command(ws, "START") == {"event": "started"}


async def test_json_nested_200000_deep_is_a_client_error_at_every_door(
    base_url, normal_wav, warm
) -> None:
    """It raised RecursionError: the session closed with 1011 and an ERROR with a traceback
    was logged. Now each door answers with its own error and goes on."""
    deep = "[" * 200_000
    async with _beside(base_url, normal_wav):
        async with await _realtime(base_url) as ws:
            await ws.send(deep)
            assert (await _next(ws, "error"))["error"]["code"] == "invalid_json"
            await ws.send('{"type": "session.update", "session": ' + "[" * 5_000 + "}")
            assert (await _next(ws, "error"))["error"]["code"] == "invalid_json"
            await _send_event(ws, {"type": "input_audio_buffer.clear"})
            await _next(ws, "input_audio_buffer.cleared")
        async with await websockets.connect(_ws(base_url, "/v1/funasr/ws")) as ws:
            await ws.send(deep)
            assert json.loads(await ws.recv())["code"] == "payload_too_large"  # unparsed
            await ws.send("[" * 50_000)
            assert json.loads(await ws.recv())["code"] == "invalid_json"
            # Hotwords as JSON text nested as deep are words, and too many of them.
            await ws.send(json.dumps({**RUNTIME_CONFIG, "hotwords": "[" * 50_000}))
            assert json.loads(await ws.recv())["code"] == "string_above_max_length"
            await ws.send(json.dumps({"is_speaking": False}))
            assert json.loads(await ws.recv())["is_final"] is True


#: One sample of 24 kHz PCM16, base64: the least audio an append can carry.
SAMPLE = json.dumps({"type": "input_audio_buffer.append", "audio": "AAA="})


async def _hold_slots(
    base_url: str, then: str, switch: asyncio.Event, every_s: float = 1.0
) -> list[ClientConnection]:
    """``MAX_SESSIONS`` OpenAI sessions, each sending a sample every ``every_s`` seconds (so
    none is idle while the rest connect, however slow the machine), then ``then`` from when
    ``switch`` is set, until it is closed."""

    async def hold() -> ClientConnection:
        ws = await _realtime(base_url)

        async def keep_sending() -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                while True:
                    await ws.send(then if switch.is_set() else SAMPLE)
                    await asyncio.sleep(every_s)

        ws.sender = asyncio.create_task(keep_sending())  # type: ignore[attr-defined]
        return ws

    sockets = []
    for _ in range(MAX_SESSIONS // CONNECTS_AT_ONCE):
        sockets += await asyncio.gather(*(hold() for _ in range(CONNECTS_AT_ONCE)))
    return sockets


async def _closed(sockets: list[ClientConnection], timeout_s: float) -> list[int | None]:
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(ws.wait_closed() for ws in sockets))
    for ws in sockets:
        await ws.sender  # type: ignore[attr-defined]
    return [ws.close_code for ws in sockets]


async def _the_next_is_refused(base_url: str) -> None:
    """While every slot is held a new session is told to retry (1013)."""
    extra = await websockets.connect(
        _ws(base_url, "/v1/realtime", f"?intent=transcription&model={WHISPER}")
    )
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(extra.recv(), 10)
    assert extra.close_code == 1013


@pytest.mark.parametrize(
    ("then", "code"),
    [
        # An empty append every second held a slot for ever: it is not audio, so idle.
        (json.dumps({"type": "input_audio_buffer.append", "audio": ""}), 4000),
        # A sample every second is audio, so the idle timeout never comes; the wall clock
        # does, counted from each session's start.
        (SAMPLE, 4003),
    ],
    ids=["empty appends", "a trickle of audio"],
)
async def test_sessions_that_send_nothing_worth_a_slot_release_it(
    base_url, normal_wav, warm, then: str, code: int
) -> None:
    """64 near-idle sockets held every session slot of a replica; each is now closed within
    its bound, and a new session gets a slot."""
    switch = asyncio.Event()
    async with _beside(base_url, normal_wav):
        started = time.monotonic()
        sockets = await _hold_slots(base_url, then, switch)
        await _the_next_is_refused(base_url)
        switch.set()
        switched = time.monotonic()
        codes = await _closed(sockets, SESSION_S + 20)
        closed = time.monotonic()
        async with await _realtime(base_url):
            pass  # a slot is free again
    print(
        f"{MAX_SESSIONS} sessions closed {set(codes)} {closed - switched:.1f} s after the "
        f"switch, {closed - started:.1f} s after the first opened"
    )
    assert codes == [code] * MAX_SESSIONS
    if code == 4000:
        assert closed - switched >= IDLE_S - 1.0  # from the last sample, before the switch
    else:
        assert closed - started >= SESSION_S


async def test_a_path_cannot_forge_a_log_line(base_url, normal_wav, warm) -> None:
    async with _beside(base_url, normal_wav):
        window = LogWindow(APP, "Ingress")
        with httpx.Client(timeout=30) as http:
            for path in ("/%0Aforged-line", "/%1B[31mred%0D%0AWARNING%20forged"):
                assert http.get(f"{base_url}{path}").status_code == 404
        text = "".join(window.read().values())
    assert "\\x0aforged-line" in text and "\\x1b[31mred\\x0d\\x0aWARNING forged" in text
    assert "\x1b" not in text
    assert not [line for line in text.splitlines() if line.startswith(("forged", "WARNING forged"))]


async def test_failing_partials_log_a_line_now_and_then(base_url, normal_wav, warm, speech) -> None:
    """A language the model lacks makes every partial fail (one every ``partial_interval_s``
    of speech): one INFO line without a traceback per interval, not a WARNING with a
    traceback each; the items fail with the model's own refusal."""
    pcm = pcm16(speech.audio, 24_000)
    async with _beside(base_url, normal_wav):
        window = LogWindow(APP, "Ingress")
        async with await _realtime(base_url) as ws:
            german = {"audio": {"input": {"transcription": {"language": "de"}}}}
            await _send_event(ws, {"type": "session.update", "session": german})
            await _next(ws, "session.updated")
            loop = asyncio.get_running_loop()
            start = loop.time()
            for i in range(0, len(pcm), 4800):  # 100 ms appends at twice real time
                chunk = base64.b64encode(pcm[i : i + 4800]).decode()
                await _send_event(ws, {"type": "input_audio_buffer.append", "audio": chunk})
                await asyncio.sleep(max(0.0, start + i / 96_000 - loop.time()))
            failed = await _next(ws, "conversation.item.input_audio_transcription.failed")
        text = "".join(window.read().values())
    lines = [line for line in text.splitlines() if "partial failed" in line]
    print(f"failing partials: {len(lines)} log lines over {len(pcm) / 48_000:.0f} s of speech")
    assert failed["error"]["param"] == "language"
    assert 1 <= len(lines) <= 2 and all(line.startswith("INFO") for line in lines)


async def test_a_foreign_page_s_browser_gets_no_session(base_url, normal_wav, warm) -> None:
    """A browser sends its page's Origin: the server's own page and the CORS origins are
    let in, any other page is refused at the handshake; clients that are not browsers send
    none."""
    host = base_url.removeprefix("http://").split("/", 1)[0]
    async with _beside(base_url, normal_wav):
        with pytest.raises(websockets.InvalidStatus) as refused:
            await _realtime(base_url, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        for origin in (ORIGIN, f"http://{host}", None):
            async with await _realtime(base_url, origin=origin):
                pass
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(_ws(base_url, "/v1/funasr/ws"), origin="https://evil.example")
