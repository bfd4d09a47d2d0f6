"""The CPU breakdown's /proc readers and report, on this test's own processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from benchmarks import cpu_breakdown as cb

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/schedstat"), reason="Linux /proc")


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_process_and_thread_readers_see_cpu_spent() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)", "ray::ServeReplica:asr:Ingress"]
    )
    try:
        before_cpu, before_sched = cb.process_cpu(os.getpid()), cb._thread_sched(os.getpid())
        _burn(0.3)
        after_cpu, after_sched = cb.process_cpu(os.getpid()), cb._thread_sched(os.getpid())
        assert child.pid in after_cpu  # descendants are counted
        assert after_cpu[os.getpid()] - before_cpu[os.getpid()] >= 0.2
        ran = after_sched[str(os.getpid())][0] - before_sched[str(os.getpid())][0]
        assert ran >= 0.2  # the main thread's id is the process id
        assert cb._role(child.pid) == "ingress"
        assert cb._role(os.getpid()) == "other Ray processes"
    finally:
        child.kill()
        child.wait()


def test_report_has_a_row_per_level_and_a_column_per_role() -> None:
    roles = ["ASR replica", "ingress", "load generator"]
    level = cb.Level(
        concurrency=16,
        requests=32,
        throughput_rps=20.0,
        p50_ms=700.0,
        mean_batch=7.5,
        cpu_percent=dict.fromkeys(roles, 10.0),
        cpu_ms_per_request=dict.fromkeys(roles, 5.0),
        engine_running_percent=60.0,
        engine_waiting_for_cpu_percent=30.0,
        outside_engine_ms_per_request=12.0,
    )
    report = cb.Breakdown(machine="m", command="c", date="d", cpus=2, levels=[level])
    table = [line for line in cb.to_markdown(report).splitlines() if line.startswith("|")]
    assert all(role in table[0] for role in roles)
    assert table[2] == (
        "| 16 | 20.00 | 700 | 7.5 | 5.0 (10%) | 5.0 (10%) | 5.0 (10%) | 60% | 30% | 12.0 |"
    )


def test_report_says_where_a_request_s_time_went() -> None:
    """From the responses' Server-Timing: each stage's mean, and the front door's share (what
    the client waited beyond the ingress's total)."""
    level = cb.Level(
        concurrency=1,
        requests=4,
        throughput_rps=5.0,
        p50_ms=200.0,
        mean_batch=1.0,
        cpu_percent={},
        cpu_ms_per_request={},
        engine_running_percent=50.0,
        engine_waiting_for_cpu_percent=1.0,
        outside_engine_ms_per_request=30.0,
        latency_ms={"upload": 1.0, "engine": 150.0, "total": 170.0, "client": 185.5},
    )
    report = cb.Breakdown(machine="m", command="c", date="d", cpus=2, levels=[level])
    page = cb.to_markdown(report)
    assert "| clients | upload | engine | total | client | client - total |" in page
    assert "| 1 | 1.0 | 150.0 | 170.0 | 185.5 | 15.5 |" in page


def test_the_load_generator_keeps_each_response_s_stages() -> None:
    from benchmarks.loadgen import Record, summarize

    records = [
        Record(clip="2s", audio_s=2, status=200, latency_s=0.2, stages_ms={"engine": 100.0}),
        Record(clip="2s", audio_s=2, status=200, latency_s=0.2, stages_ms={"engine": 140.0}),
        Record(clip="2s", audio_s=2, status=503, latency_s=0.01, stages_ms={"engine": 0.0}),
    ]
    assert summarize("s", "closed", records, 1.0).mean_stages_ms == {"engine": 120.0}
