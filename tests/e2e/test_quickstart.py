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

from asr_serve.testing.speech import encode, synthesize
from asr_serve.testing.text import normalize

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
URL = "http://127.0.0.1:8000"


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
        assert ready, (tmp_path / "serve.log").read_text()[-4000:]
        wav = encode(synthesize("hello world"), 16000, "wav")
        resp = httpx.post(
            f"{URL}/v1/audio/transcriptions", files={"file": ("hello.wav", wav)}, timeout=60
        )
        assert resp.status_code == 200, resp.text
        assert normalize(resp.json()["text"]) == ["hello", "world"]
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
