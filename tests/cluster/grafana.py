"""What the Grafana dashboard queries and what the project exports, for the tests to compare."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "cluster" / "grafana" / "asr-serve-dashboard.json"
METRICS_MODULE = ROOT / "asr_serve" / "deployments" / "serve_metrics.py"

#: Ray prefixes every application metric with this when it exports it.
RAY_PREFIX = "ray_"
_SERIES = re.compile(r"\bray_[a-z0-9_]+\b")
_GROUP_BY = re.compile(r"\bby\s*\(([^)]*)\)")
_MATCHER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def queries() -> list[str]:
    """Every PromQL expression of every panel."""
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def series_in(expr: str) -> set[str]:
    return set(_SERIES.findall(expr))


def labels_in(expr: str) -> set[str]:
    """Label names the expression groups by or matches on (``le`` is every histogram's)."""
    names = set(_MATCHER.findall(expr))
    for group in _GROUP_BY.findall(expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    return names - {"le"}


def custom_metrics() -> dict[str, str]:
    """Name -> kind (Histogram, Counter, Gauge) of each metric ``METRICS_MODULE`` defines."""
    found = {}
    for node in ast.walk(ast.parse(METRICS_MODULE.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("Histogram", "Counter", "Gauge")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found[node.args[0].value] = node.func.attr
    return found


def exported_series(name: str, kind: str) -> set[str]:
    """The Prometheus series Ray exports for one application metric."""
    full = RAY_PREFIX + name
    if kind == "Histogram":
        return {f"{full}_bucket", f"{full}_sum", f"{full}_count"}
    if kind == "Counter" and not full.endswith("_total"):
        return {f"{full}_total"}
    return {full}


def custom_series() -> set[str]:
    return {s for name, kind in custom_metrics().items() for s in exported_series(name, kind)}
