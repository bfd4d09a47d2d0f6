"""Long audio through real Serve: VAD pieces, fan-out and stitching, subtitles, streaming.

One ten-minute recording of espeak sentences with known pauses (1.0-1.5 s), encoded once as
MP3, serves every test; each property is checked once, on the cheapest model that shows it:
the tiny random-weight Fun-ASR-Nano where only boundaries and timing matter, the embedded
Whisper tiny.en where the words matter.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time

import httpx
import numpy as np
import openai
import pytest
import srt
import webvtt
from ray import serve

from asr_serve.audio.decode import decode_audio
from asr_serve.audio.splitting import PieceSplitter
from asr_serve.config import ModelConfig, SplittingConfig
from asr_serve.engines import TranscribeOptions, create_engine
from devtools.long_audio import Recording, long_recording
from devtools.speech import encode, synthesize
from devtools.text import wer
from tests.e2e.serving import TINY_MODEL, WHISPER, deploy, tiny_args, undeploy, whisper_model

pytestmark = pytest.mark.e2e

APP = "long"
ASR_TINY = f"ASR-{TINY_MODEL}"
WHISPER_MODEL = whisper_model()
SPLITTING = SplittingConfig(max_in_flight=4)
MAX_AUDIO_S = 700.0
#: How far a cut may sit outside a true pause: the VAD's padding plus MP3's codec delay.
TOLERANCE_S = SPLITTING.speech_pad_ms / 1000 + 0.1


@pytest.fixture(scope="module")
def prefix(serve_url: str, tiny_model_dir) -> str:
    args = tiny_args(tiny_model_dir)
    args["models"].append(WHISPER_MODEL)
    args["splitting"] = SPLITTING.model_dump()
    args["limits"] = {"max_audio_s": MAX_AUDIO_S, "request_timeout_s": 300}
    yield deploy(APP, args, {f"ASR-{WHISPER}": {"ray_actor_options": {"num_cpus": 1}}})
    undeploy(APP)


@pytest.fixture(scope="module")
def recording() -> Recording:
    return long_recording(600)


@pytest.fixture(scope="module")
def mp3(recording: Recording) -> bytes:
    return encode(recording.samples, 16000, "mp3")


def _post(http: httpx.Client, prefix: str, data: bytes, **fields) -> httpx.Response:
    return http.post(
        f"{prefix}/v1/audio/transcriptions",
        files={"file": ("long.mp3", data)},
        data=fields,
        timeout=300,
    )


def _within_a_pause(recording: Recording, end: float, start: float) -> bool:
    return any(
        p0 - TOLERANCE_S <= end and start <= p1 + TOLERANCE_S for p0, p1 in recording.pauses_s()
    )


def test_short_request_overtakes_long_one_whose_pieces_cut_at_pauses(
    http, prefix, recording, mp3
) -> None:
    """Fairness and boundaries: the long file's pieces take turns in the model's batches."""
    stats = serve.get_deployment_handle(ASR_TINY, APP).stats
    batches_before = len(stats.remote().result()["recent_batch_sizes"])
    short = encode(synthesize("hello world"), 16000, "wav")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.perf_counter()
        long_future = pool.submit(
            _post, http, prefix, mp3, model=TINY_MODEL, response_format="verbose_json"
        )
        # Send the short request once the long one's pieces are in the model's batches.
        while len(stats.remote().result()["recent_batch_sizes"]) == batches_before:
            assert not long_future.done(), long_future.result().text
            time.sleep(0.05)
        short_sent = time.perf_counter()
        short_resp = _post(http, prefix, short, model=TINY_MODEL)
        short_s = time.perf_counter() - short_sent
        long_resp = long_future.result()
        long_s = time.perf_counter() - started
    assert short_resp.status_code == 200 and long_resp.status_code == 200, long_resp.text
    long_left_s = long_s - (short_sent - started)
    assert short_s < long_left_s / 2, (short_s, long_left_s)

    body = long_resp.json()
    assert abs(body["duration"] - recording.duration_s) < 0.2
    segments = body["segments"]
    # The tiny model gives no timestamps: each VAD piece is one segment, so these are the cuts.
    assert len(segments) >= recording.duration_s / SPLITTING.max_piece_s
    assert [s["id"] for s in segments] == list(range(len(segments)))
    assert all(s["end"] - s["start"] <= SPLITTING.max_piece_s + 1e-3 for s in segments)
    for before, after in itertools.pairwise(segments):
        assert before["end"] <= after["start"]
        assert _within_a_pause(recording, before["end"], after["start"]), (before, after)
    assert segments[0]["start"] < recording.speech[0][0] / 16000
    assert segments[-1]["end"] > recording.speech[-1][1] / 16000


def test_openai_stream_matches_in_process_pieces_and_starts_early(
    serve_url, prefix, recording, mp3
) -> None:
    """Whisper over SSE with the ``openai`` client: one delta per piece, as in process."""
    client = openai.OpenAI(base_url=f"{serve_url}{prefix}/v1", api_key="unused", timeout=300)
    started = time.perf_counter()
    stream = client.audio.transcriptions.create(model=WHISPER, file=("long.mp3", mp3), stream=True)
    events, first_s = [], None
    for event in stream:
        first_s = first_s or time.perf_counter() - started
        events.append(event)
    total_s = time.perf_counter() - started
    # Decoding and VAD of the whole file come before the first piece; after it, the pieces
    # take about five batches. The first delta must come while a good part of them remain.
    assert first_s < total_s * 2 / 3, (first_s, total_s)
    *deltas, done = events
    assert {e.type for e in deltas} == {"transcript.text.delta"}
    assert done.type == "transcript.text.done" and done.text == "".join(e.delta for e in deltas)
    assert wer([" ".join(recording.texts)], [done.text]) < 0.25

    # In process: the same decode, the same VAD pieces, the same engine, on a sample of
    # pieces (one CPU batch). Whisper's int8 batched decoding varies a little with the batch
    # it shares (the served batches mix pieces differently), so words are compared by WER.
    samples = decode_audio(mp3, max_duration_s=MAX_AUDIO_S).samples
    pieces = PieceSplitter(SPLITTING).split(samples)
    assert len(pieces) == len(deltas)  # every piece of this recording has speech
    engine = create_engine(ModelConfig.model_validate(WHISPER_MODEL))
    engine.load()
    sample = [0, 1, len(pieces) // 2, len(pieces) - 1]
    local = engine.transcribe(
        [samples[pieces[i][0] : pieces[i][1]] for i in sample], [TranscribeOptions()] * len(sample)
    )
    served = [deltas[i].delta for i in sample]
    assert wer([r.text for r in local], served) < 0.1, (served, [r.text for r in local])


def test_srt_and_vtt_are_valid_with_absolute_times(http, prefix, recording) -> None:
    # About 75 s, cut in a pause: three pieces, the later ones far from the file's start.
    count = sum(end < 75 * 16000 for _, end in recording.speech)
    cut_s = recording.speech[count - 1][1] / 16000 + 0.5
    clip = encode(recording.samples[: round(cut_s * 16000)], 16000, "mp3")

    cues = list(srt.parse(_post(http, prefix, clip, model=WHISPER, response_format="srt").text))
    starts = [c.start.total_seconds() for c in cues]
    assert starts == sorted(starts) and cues[-1].end.total_seconds() <= cut_s + 0.1
    assert starts[-1] > SPLITTING.max_piece_s  # absolute, not relative to its piece
    said = " ".join(c.content for c in cues)
    assert wer([" ".join(recording.texts[:count])], [said]) < 0.25

    vtt = _post(http, prefix, clip, model=TINY_MODEL, response_format="vtt")
    assert vtt.headers["content-type"].startswith("text/vtt")
    captions = webvtt.from_string(vtt.text, strict=True).captions
    assert len(captions) >= cut_s / SPLITTING.max_piece_s
    assert all(a.end_in_seconds <= b.start_in_seconds for a, b in itertools.pairwise(captions))


def test_audio_over_the_duration_limit_is_413(http, prefix) -> None:
    too_long = encode(np.zeros(round((MAX_AUDIO_S + 60) * 16000), np.float32), 8000, "wav")
    resp = _post(http, prefix, too_long)
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
