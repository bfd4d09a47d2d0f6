"""The fairness benchmark's bookkeeping: the ratios, the goals, the report."""

from __future__ import annotations

from benchmarks.fairness import GOAL_RATIO, _summary, markdown


def _phase(p95: float, flooder: float, **extra: object) -> dict:
    return {
        "load_average_1min": 3.0,
        "normal_statuses": {"200": 40},
        "normal_p50_s": p95 / 2,
        "normal_p95_s": p95,
        "flooder_model_share": flooder,
        "normal_model_share_each": [0.1] * 8,
        **extra,
    }


PHASES = {
    "alone": _phase(1.0, 0.0),
    "file flood": _phase(1.4, 0.11, flooder_answers={"429 rate_limit_exceeded": 30, "200": 5}),
    "live flood": _phase(
        2.0,
        0.05,
        flooder_items=9,
        flooder_items_ended=9,
        flooder_errors={"rate_limit_exceeded": 1491},
    ),
}


def test_ratios_are_the_flood_p95_over_the_p95_alone_against_the_goal() -> None:
    summary = _summary(PHASES)
    assert summary["p95_ratio_files_flood"] == 1.4 and summary["p95_ratio_live_flood"] == 2.0
    assert summary["flooder_model_share_files_flood"] == 0.11
    met = summary["met"]
    assert met[f"normal P95 with a files flood / alone <= {GOAL_RATIO:g}"]
    assert not met[f"normal P95 with a live flood / alone <= {GOAL_RATIO:g}"]
    assert met["every normal request 200"]


def test_a_refused_normal_request_fails_the_goal_and_the_report_says_so() -> None:
    phases = {**PHASES, "alone": _phase(1.0, 0.0) | {"normal_statuses": {"200": 9, "503": 1}}}
    summary = _summary(phases)
    assert not summary["met"]["every normal request 200"]
    report = {
        "date": "2026-12-02T00:00:00+00:00",
        "machine": "2cpu-test",
        "command": "python -m benchmarks.fairness",
        "model": {"name": "m"},
        "seconds": 45.0,
        "phases": phases,
        "summary": summary,
    }
    page = markdown(report)
    assert "NOT met: every normal request 200" in page
    assert "| live flood | 3.0 |" in page and "'items': 9" in page
