"""The CPU quickstart exactly as the README runs it: `serve run serve_config.cpu.yaml`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from asr_serve.testing.speech import encode, synthesize
from asr_serve.testing.text import normalize

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8000"
DASHBOARD = "http://127.0.0.1:8265"


def test_serve_run_cpu_config(tmp_path: Path) -> None:
    serve_cli = Path(sys.executable).with_name("serve")
    log = (tmp_path / "serve.log").open("w")
    # A cluster of its own: never the one the other e2e tests share.
    env = {**os.environ, "RAY_ADDRESS": "local"}
    proc = subprocess.Popen(
        [str(serve_cli), "run", "serve_config.cpu.yaml"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        ready = False
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(httpx.HTTPError):
                ready = httpx.get(f"{URL}/ready", timeout=5).status_code == 200
            if ready:
                break
            time.sleep(1)
        started = (tmp_path / "serve.log").read_text()
        assert ready, started[-4000:]
        # The cue the README gives: the model says it is warm. (Ray's token-auth notice is
        # printed only where no token was made before, so it is not checked here.)
        assert "model whisper-tiny.en (faster-whisper) loaded and warmed up" in started

        # The monitoring steps of the README: without the token the CLI is refused ...
        plain = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
        refused = subprocess.run(
            [str(serve_cli), "status", "-a", DASHBOARD],
            capture_output=True,
            text=True,
            timeout=60,
            env=plain,
        )
        assert refused.returncode != 0 and "Authentication required" in refused.stderr
        # ... with it, it answers; the dashboard's API takes the token `ray get-auth-token` prints.
        status = subprocess.run(
            [str(serve_cli), "status", "-a", DASHBOARD],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**plain, "RAY_AUTH_MODE": "token"},
        ).stdout
        token = subprocess.run(
            [str(serve_cli.with_name("ray")), "get-auth-token"],
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
        }

        hello = synthesize("hello world")
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
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
