"""The harness's server processes stop on Ctrl-C even where the harness was started in the
background with SIGINT ignored (as a non-interactive shell does), which is how CI runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

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
