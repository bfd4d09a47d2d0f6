"""Starting and stopping a system under test as a subprocess on a free 127.0.0.1 port."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from benchmarks.loadgen import TRANSCRIPTIONS
from devtools.net import free_port

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
#: How long a ``serve run`` gets to stop on Ctrl-C before its processes are killed: it
#: stops in 5-10 s; waiting longer only idles the machine.
SERVE_RUN_STOP_S = 15.0


def pass_ctrl_c_on() -> None:
    """Let the subprocesses started from here act on Ctrl-C (SIGINT), which is how a
    ``serve run`` is stopped. A process that a non-interactive shell starts in the background
    (``make test &``, a CI runner's job) inherits SIGINT ignored, and so, across exec, would
    every ``serve run`` it starts: the signal would do nothing and each stop would wait
    :data:`SERVE_RUN_STOP_S` for the kill. With a handler here, children start with the
    default. Call it from the main thread."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def http_ok(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url, timeout=5).status_code == 200
    return False


def descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (read from /proc; no extra dependency)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            # The command name may contain spaces or parentheses: split after the last ")".
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    return []


class ServerProcess:
    """A server subprocess in a session of its own, its output in ``log_path``."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        pass_ctrl_c_on()
        self.argv = argv
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.perf_counter()
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait(self, ready: Callable[[], bool], timeout_s: float) -> float:
        """Poll ``ready`` until true; return seconds since start, or raise with the log tail."""
        assert self.proc is not None
        deadline = self.started_at + timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                break
            if ready():
                return time.perf_counter() - self.started_at
            time.sleep(0.25)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        state = f"exited {self.proc.returncode}" if self.proc.poll() is not None else "timed out"
        raise RuntimeError(f"{self.argv[:4]} not ready ({state}); log tail:\n{tail}")

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        """Signal the process group; then kill whatever it started that is still alive."""
        if self.proc is None:
            return
        spawned = descendants(self.proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in spawned:  # Ray daemons may leave the process group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self.proc = None


class HTTPSystem:
    """A system reached over HTTP: started, measured by the load generator, stopped."""

    name: str
    #: Form fields sent with every request (e.g. the model name).
    fields: dict[str, str] = {}

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_dir = log_dir
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return self.base_url + TRANSCRIPTIONS

    def start(self) -> float:
        """Start and wait until every model copy is warm; return the seconds it took."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def batch_sizes(self) -> list[int] | None:
        """Batch sizes formed so far, where the system exposes them."""
        return None
