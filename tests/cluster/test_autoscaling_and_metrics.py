"""Autoscaling on a multi-node cluster, and what operators see of it: Prometheus, dashboard.

One application with production's shape of autoscaling (the ASR deployment on half GPUs,
the decoder on CPUs, each with its own policy) but short delays, so a phase takes seconds:

- an ASR-bound load (short WAV clips: nothing to decode, time spent batching and
  transcribing) grows the ASR deployment to ``max_replicas`` while the decoder settles at
  its minimum, the dashboard's Serve API shows the new replicas, and once the load stops
  ASR returns to ``min_replicas`` within the downscale delay;
- a decode-bound load (long 8-channel 48 kHz Opus: decoding, downmixing and resampling
  cost more than the model's pass over the 16 kHz mono result) grows the decoder, not ASR;
- no request fails in either phase, nor while replicas are removed under a trickle of
  traffic;
- the project's metrics and every series the Grafana dashboard queries reach the nodes'
  Prometheus endpoints, with the labels the panels group by.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from ray import serve

from devtools.speech import encode, noise, pcm16
from tests.cluster import grafana
from tests.cluster.conftest import LocalCluster
from tests.cluster.harness import (
    ASR,
    DECODER,
    Load,
    ScaleWatch,
    dashboard_running_replicas,
    live,
    running,
    wait_for,
    wait_for_series,
)
from tests.e2e.serving import SPEAKERS_ON, TINY_MODEL, deploy, tiny_args
from tests.support.realtime import COMPLETED

# Both: `-m "not e2e"` keeps meaning "no Ray"; `-m cluster` selects these alone.
pytestmark = [pytest.mark.e2e, pytest.mark.cluster]

APP = "scale"
ASR_MAX = 3
DECODER_MAX = 2
DOWNSCALE_DELAY_S = 5.0
#: Seconds on top of the downscale delay: metrics look-back, the controller's loop, and a
#: replica's graceful stop.
DOWNSCALE_SLACK_S = 20.0
#: How long a steady state is watched to hold.
STEADY_S = 5.0
_FAST = {
    "metrics_interval_s": 0.5,
    "look_back_period_s": 2.0,
    "upscale_delay_s": 1.0,
    "downscale_delay_s": DOWNSCALE_DELAY_S,
}
OPTIONS = {
    ASR: {
        "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0.5},
        "max_ongoing_requests": 32,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": ASR_MAX,
            "target_ongoing_requests": 3,
            **_FAST,
        },
    },
    DECODER: {
        "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0},
        "max_ongoing_requests": 6,
        "autoscaling_config": {
            "min_replicas": 1,
            "max_replicas": DECODER_MAX,
            "target_ongoing_requests": 3,
            **_FAST,
        },
    },
}
#: A short clip waits the whole second for a batch that never fills: its time goes to the ASR
#: deployment at a request rate too low to load the decoder. A 60 s upload costs a whole
#: batch (max_batch_audio_s) and runs at once, so a decode-bound load adds little to ASR.
BATCHING = {"max_batch_size": 32, "batch_wait_timeout_s": 1.0, "max_batch_audio_s": 60.0}
SHORT = ("short.wav", encode(noise(1.0, 11), 16000, "wav"))


@pytest.fixture(scope="module")
def app_url(serve_url: str, tiny_model_dir: Path) -> Iterator[str]:
    args = tiny_args(tiny_model_dir, model={"batching": BATCHING}, speakers=SPEAKERS_ON)
    prefix = deploy(APP, args, OPTIONS)
    yield f"{serve_url}{prefix}/v1/audio/transcriptions"
    serve.delete(APP)


@pytest.fixture(scope="module")
def heavy_upload() -> tuple[str, bytes]:
    return ("long.ogg", encode(noise(60.0, 12), 48000, "ogg-opus", channels=8))


def _at_min(states: dict[str, dict[str, int]]) -> bool:
    return all(sum(states[d].values()) == 1 for d in (ASR, DECODER))


def _scale_down(watch: ScaleWatch, url: str, deployment: str) -> Load:
    """Keep a trickle of traffic while ``deployment`` returns to one replica; return it."""
    with Load(url, SHORT, clients=1) as trickle:
        watch.until(
            lambda s: sum(s[deployment].values()) == 1,
            DOWNSCALE_DELAY_S + DOWNSCALE_SLACK_S,
            f"{deployment} back at min_replicas",
        )
    return trickle


def test_asr_grows_under_asr_bound_load_and_returns_to_min(
    app_url: str, ray_cluster: LocalCluster
) -> None:
    watch = ScaleWatch(APP)
    watch.until(_at_min, 60, "every deployment at min_replicas before the load")
    with Load(app_url, SHORT, clients=10) as load:
        watch.until(lambda s: running(s, ASR) == ASR_MAX, 150, f"{ASR_MAX} running ASR replicas")
        # What an operator watching the dashboard's Serve page sees, while it happens.
        wait_for(
            lambda: dashboard_running_replicas(ray_cluster.dashboard_url, APP)[ASR] == ASR_MAX,
            20,
            "the dashboard's Serve API to show the scaled-up ASR deployment",
        )
        # New ASR replicas load their model on the cores every node here shares, which can
        # slow the decoder enough to add a replica for a moment; the steady state under an
        # ASR-bound load is ASR at max_replicas and the decoder at its minimum.
        watch.until(
            lambda s: sum(s[DECODER].values()) == 1,
            DOWNSCALE_DELAY_S + DOWNSCALE_SLACK_S,
            "the decoder at min_replicas under the ASR-bound load",
        )
        watch.clear()
        watch.observe(STEADY_S)
    assert all(running(s, ASR) == ASR_MAX and live(s, DECODER) == 1 for s in watch.snapshots), (
        watch.timeline()
    )
    assert load.results and not load.failures, load.failures[:5]

    watch.clear()
    trickle = _scale_down(watch, app_url, ASR)
    assert trickle.results and not trickle.failures, trickle.failures[:5]


def test_decode_bound_load_grows_the_decoder_not_asr(
    app_url: str, heavy_upload: tuple[str, bytes]
) -> None:
    watch = ScaleWatch(APP)
    watch.until(_at_min, DOWNSCALE_DELAY_S + DOWNSCALE_SLACK_S, "min_replicas before the load")
    watch.clear()
    with Load(app_url, heavy_upload, clients=7) as load:
        watch.until(
            lambda s: running(s, DECODER) == DECODER_MAX, 120, f"{DECODER_MAX} running decoders"
        )
    assert watch.peak(ASR) == 1, watch.timeline()
    assert load.results and not load.failures, load.failures[:5]

    watch.clear()
    trickle = _scale_down(watch, app_url, DECODER)
    assert trickle.results and not trickle.failures, trickle.failures[:5]


def _live_utterance(app_url: str) -> str:
    """One live session (OpenAI's protocol, a manual commit) of the diarizing model name, so
    the Speakers deployment embeds the utterance too: its transcript."""
    url = app_url.replace("http://", "ws://", 1).replace("/audio/transcriptions", "/realtime")
    audio = base64.b64encode(pcm16(noise(1.0, 3), 24_000)).decode()

    async def session() -> str:
        async with websockets.connect(f"{url}?model={TINY_MODEL}-diarize") as conn:
            session = {"type": "transcription", "audio": {"input": {"turn_detection": None}}}
            await conn.send(json.dumps({"type": "session.update", "session": session}))
            await conn.send(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            await conn.send(json.dumps({"type": "input_audio_buffer.commit"}))
            async with asyncio.timeout(60):
                while (event := json.loads(await conn.recv()))["type"] != COMPLETED:
                    assert event["type"] != "error", event
            return event["transcript"]

    return asyncio.run(session())


def test_metrics_reach_prometheus_with_what_the_dashboard_queries(app_url: str) -> None:
    with httpx.Client(timeout=60) as http:
        for _ in range(3):
            assert http.post(app_url, files={"file": SHORT}).status_code == 200
        bad = http.post(app_url, files={"file": ("bad.wav", b"this is not audio " * 64)})
    assert bad.status_code == 400
    rejected_code = bad.json()["error"]["code"]
    _live_utterance(app_url)

    # Counted only when something happens that nothing here makes happen: the model raising
    # or running out of memory, lookups in a result cache (off here: no Redis), a queue
    # wait past its bound, a live item failing, a partial shed; GPU metrics need a GPU.
    not_here = {
        "ray_asr_engine_errors_total",
        "ray_asr_out_of_memory_total",
        "ray_asr_cache_hits_total",
        "ray_asr_cache_misses_total",
        "ray_asr_cache_errors_total",
        "ray_asr_queue_refused_total",
        "ray_asr_live_items_failed_total",
        "ray_asr_live_partials_shed_total",
        "ray_asr_partials_shed_at_model_total",
    }
    expected = {
        s
        for s in grafana.custom_series() | set().union(*map(grafana.series_in, grafana.queries()))
        if s not in not_here and not s.startswith("ray_node_g")
    }
    samples = wait_for_series(expected, 60)

    for name in grafana.custom_series() & samples.keys():
        assert any(s.labels.get("application") == APP for s in samples[name]), name
    assert any(
        s.labels.get("model") == TINY_MODEL and s.value == 1
        for s in samples["ray_asr_model_loaded"]
    )
    assert any(
        s.labels.get("code") == rejected_code for s in samples["ray_asr_decode_rejected_total"]
    )
    assert any(
        s.labels.get("protocol") == "openai_realtime" and s.value >= 1
        for s in samples["ray_asr_live_utterances_total"]
    )
    # Every label a panel groups by or filters on is on the series it queries.
    for expr in grafana.queries():
        for name in grafana.series_in(expr) & samples.keys():
            present = set().union(*(s.labels for s in samples[name]))
            assert grafana.labels_in(expr) <= present, (expr, present)
