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
