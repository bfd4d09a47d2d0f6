"""The harness's server processes: they stop on Ctrl-C even where the harness was started in
the background with SIGINT ignored (as a non-interactive shell does), which is how CI runs
it, and a ``serve run`` gets the environment of the front door a benchmark asks for."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from benchmarks.systems.served import front_env

ROOT = Path(__file__).resolve().parents[1]

#: A harness started with SIGINT ignored: it starts a server that waits for Ctrl-C and stops
#: it with SIGINT, printing how long the stop took and how the server ended.
HARNESS = textwrap.dedent(
    """
    import signal, sys, time
    from pathlib import Path
    from benchmarks.systems.base import ServerProcess

    server = ServerProcess(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
        {}, Path(sys.argv[1]),
    )
    server.start()
    while "up" not in Path(sys.argv[1]).read_text():
        time.sleep(0.05)
    proc = server.proc
    started = time.monotonic()
    server.stop(sig=signal.SIGINT, timeout_s=20)
    print(f"{time.monotonic() - started:.1f} {proc.returncode}")
    """
)


def test_a_server_started_by_a_harness_that_ignores_ctrl_c_still_stops_on_it(
    tmp_path: Path,
) -> None:
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, str(tmp_path / "server.log")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    ).stdout
    seconds, code = out.split()
    # Ended by the signal at once; an ignored one would wait for the kill (-9) at 20 s.
    assert int(code) == -signal.SIGINT and float(seconds) < 5, out


def test_each_front_door_is_the_serve_run_s_environment(tmp_path: Path) -> None:
    """The shipped front adds nothing; HAProxy gets ports and files of this run's own, under
    its directory, so two runs on one machine never share them."""
    assert front_env("proxy", tmp_path) == {}
    assert front_env("optimized", tmp_path) == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
    one, two = front_env("haproxy", tmp_path), front_env("haproxy", tmp_path / "x")
    assert one["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    assert one["RAY_SERVE_HAPROXY_STATS_PORT"] != one["RAY_SERVE_HAPROXY_METRICS_PORT"]
    assert one["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith(str(tmp_path))
    assert one["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"] != two["RAY_SERVE_HAPROXY_CONFIG_FILE_LOC"]
