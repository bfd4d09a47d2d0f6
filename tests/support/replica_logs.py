"""Reading what a Serve application's replicas logged, from the Ray session's log files.

Serve writes each replica's log to ``<session>/logs/serve/replica_<app>_<deployment>_<id>.log``
(TEXT encoding: each record starts with its level name). A :class:`LogWindow` remembers how
far each file was written when it was opened, so a test reads only what happened after.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import ray

#: A record's first line: ``ERROR 2026-12-01 08:09:19,480 app_deployment id -- message``.
_RECORD = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) \d{4}-\d\d-\d\d ", re.MULTILINE)


def serve_logs_dir() -> Path:
    """The running Ray session's ``logs/serve`` directory (this process is its driver)."""
    return Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"


class LogWindow:
    """What the replicas of ``app`` (optionally one deployment) write from now on."""

    def __init__(self, app: str, deployment: str = "") -> None:
        self._pattern = f"replica_{app}_{deployment}*.log"
        self._start = {path: path.stat().st_size for path in self._paths()}

    def _paths(self) -> list[Path]:
        return sorted(serve_logs_dir().glob(self._pattern))

    def read(self, settle_s: float = 1.0) -> dict[str, str]:
        """New text per file name, after ``settle_s`` for the replicas' log handlers to flush."""
        time.sleep(settle_s)
        new = {}
        for path in self._paths():
            with path.open("rb") as f:
                f.seek(self._start.get(path, 0))
                new[path.name] = f.read().decode(errors="replace")
        return new


def records(text: str, level: str) -> list[str]:
    """The first lines of the records at ``level`` in a log's text."""
    return [
        m.group(0) + text[m.end() :].split("\n", 1)[0]
        for m in _RECORD.finditer(text)
        if m.group(1) == level
    ]


def tracebacks(text: str) -> int:
    """How many tracebacks the text holds (each exception of a chain has its own)."""
    return text.count("Traceback (most recent call last)")
