"""The benchmark harness end to end, at its smallest: every system answers a few requests.

Starts a real ``serve run`` (its own Ray), the baseline servers and funasr's server on the
generated Fun-ASR-Nano checkpoint, then checks the report it writes, not the speed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.plan import SYSTEMS
from benchmarks.report import TARGETS

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_writes_the_report(tmp_path: Path) -> None:
    # As a user runs it, in a process of its own: the harness attaches a Ray driver to the
    # cluster `serve run` starts, which it cannot do from a process already in another one.
    cmd = [sys.executable, "-m", "benchmarks.run", "--quick", "--engines", "funasr"]
    # Without this session's Ray settings, as from a user's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    subprocess.run([*cmd, "--out", str(tmp_path)], cwd=ROOT, env=env, check=True, timeout=540)

    (result,) = (p for p in tmp_path.glob("*-quick.json"))
    report = json.loads(result.read_text())
    rep = report["engines"]["funasr"]
    for name in SYSTEMS:
        system = rep["systems"][name]
        assert system["error"] is None, f"{name}: {system['error']}"
        assert system["levels"] and all(s["ok"] == s["requests"] for s in system["levels"]), name
    assert rep["generated_tokens"] == [rep["model"]["max_new_tokens"]] * len(
        rep["plan"]["clip_seconds"]
    )
    # The served model formed batches, and the harness saw them.
    assert any(s["batch_sizes"] for s in rep["systems"]["asr-serve"]["levels"])

    latest = json.loads((tmp_path / "latest.json").read_text())
    for key in TARGETS:
        assert math.isfinite(latest[key]), key
    assert {"machine", "command", "date"} <= latest.keys()
    for suffix in (".md", ".png"):
        assert result.with_suffix(suffix).stat().st_size > 0
