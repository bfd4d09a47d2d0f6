"""Fixtures every test package shares, and where the suite's time goes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from devtools.tiny_model import ensure_tiny_model

#: How many modules the end-of-run time table lists.
_SLOWEST_MODULES = 15


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The generated tiny Fun-ASR-Nano checkpoint (made once, then reused from its cache)."""
    return ensure_tiny_model()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Seconds per test module (setup, call and teardown): ``--durations`` lists only tests,
    while a module's shared deployments are paid in one test's setup."""
    seconds: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            if isinstance(report, pytest.TestReport):
                seconds[report.nodeid.split("::")[0]] += report.duration
    if len(seconds) < 2:
        return
    total = sum(seconds.values())
    terminalreporter.write_sep("=", f"slowest {_SLOWEST_MODULES} modules")
    for module, spent in sorted(seconds.items(), key=lambda kv: -kv[1])[:_SLOWEST_MODULES]:
        terminalreporter.write_line(f"{spent:8.1f}s {spent / total:6.1%}  {module}")
    terminalreporter.write_line(f"{total:8.1f}s in {len(seconds)} modules")
