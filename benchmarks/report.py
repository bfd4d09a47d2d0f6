"""The run's results as JSON, Markdown and a PNG plot, and the ratios ``latest.json`` keeps.

Absolute figures depend on the machine and its neighbours; only ratios between systems of
the same run are compared, so every headline number here is one.
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import shlex
import sys
from pathlib import Path

from pydantic import BaseModel, Field

from benchmarks.loadgen import RunStats

#: Targets (see benchmarks/README.md): ratio key -> (comparison, bound).
TARGETS = {
    "served_vs_inprocess_throughput": (">=", 0.9),
    "batching_gain_kept": (">=", 0.9),
    "served_vs_seed_style_throughput_c16": (">=", 1.0),
    "served_vs_funasr_server_throughput_c16": (">=", 2.0),
    "added_latency_p50_ms_c1": ("<=", 30.0),
    "served_vs_sequential_added_p50_ms_c1": ("<=", 20.0),
}
#: Where a ratio compares throughput "at concurrency 16": the level used when a run
#: (``--quick``) has no 16, is the highest it has.
COMPARE_AT = 16
QUICK_NOTE = (
    "Quick run: a few requests per system, systems started at once beside the in-process "
    "run; its ratios check the harness, they measure nothing."
)


class SystemResult(BaseModel):
    system: str
    ready_s: float | None = None
    first_request_ms: float | None = None
    first_request_clip: str | None = None
    levels: list[RunStats] = Field(default_factory=list)
    error: str | None = None

    def closed(self, concurrency: int, mode: str = "closed") -> RunStats | None:
        return next(
            (s for s in self.levels if s.mode == mode and s.concurrency == concurrency), None
        )

    def best_closed(self) -> RunStats | None:
        closed = [s for s in self.levels if s.mode == "closed"]
        return max(closed, key=lambda s: s.rtfx, default=None)


class EngineReport(BaseModel):
    engine: str
    model: dict
    plan: dict
    inprocess: SystemResult | None = None
    #: Tokens the funasr LLM generated per clip of the mix (fixed-length check).
    generated_tokens: list[int] = Field(default_factory=list)
    systems: dict[str, SystemResult] = Field(default_factory=dict)
    #: Why the phase of one client taking turns failed, if it did (its key is then missing).
    turns_error: str | None = None

    def ratios(self) -> dict[str, float | int | None]:
        """The headline ratios (throughput as audio seconds per second, RTFx)."""
        inproc = self.inprocess.levels if self.inprocess else []
        best = max(inproc, key=lambda s: s.rtfx, default=None)
        one = next((s for s in inproc if s.batch_size == 1), None)
        served = self.systems.get("asr-serve")
        at = _compare_level(self)

        def rtfx(name: str, level: int | None = at) -> float | None:
            result = self.systems.get(name)
            stats = result.closed(level) if result and level is not None else None
            return stats.rtfx if stats and stats.ok else None

        served_best = served.best_closed() if served else None
        served_c1 = served.closed(1) if served else None
        sequential = self.systems.get("sequential")

        def added_over_sequential(mode: str) -> float | None:
            """Clip by clip, asr-serve's P50 less the sequential server's, averaged over the
            mix: the P50 of the whole mix falls between two clips' latencies, so it follows
            whichever one request lands in the middle."""
            ours = served.closed(1, mode) if served else None
            theirs = sequential.closed(1, mode) if sequential else None
            if not (ours and theirs and ours.ok and theirs.ok):
                return None
            ours_by_clip, theirs_by_clip = ours.p50_ms_by_clip, theirs.p50_ms_by_clip
            if not ours_by_clip or ours_by_clip.keys() != theirs_by_clip.keys():
                return None
            added = [ours_by_clip[c] - theirs_by_clip[c] for c in ours_by_clip]
            return sum(added) / len(added)

        return {
            "served_vs_inprocess_throughput": _div(
                served_best.rtfx if served_best else None, best.rtfx if best else None
            ),
            "batching_gain_kept": _div(
                _div(rtfx("asr-serve"), rtfx("sequential")),
                _div(best.rtfx if best else None, one.rtfx if one else None),
            ),
            # Two model copies each: seed-style's two workers, the scaled config's replicas.
            "served_vs_seed_style_throughput_c16": _div(
                rtfx("asr-serve-scaled"), rtfx("seed-style")
            ),
            "served_1replica_vs_seed_style_throughput_c16": _div(
                rtfx("asr-serve"), rtfx("seed-style")
            ),
            "served_vs_funasr_server_throughput_c16": _div(
                rtfx("asr-serve"), rtfx("funasr-server")
            ),
            "added_latency_p50_ms_c1": (
                served_c1.p50_ms - one.p50_ms if served_c1 and one and served_c1.ok else None
            ),
            # The path alone: a plain server doing the same decode and inference, one client
            # taking turns between the two (run.measure_turns); "_apart": each measured alone.
            # Both per clip of the mix (added_over_sequential).
            "served_vs_sequential_added_p50_ms_c1": added_over_sequential("turns"),
            "served_vs_sequential_added_p50_ms_c1_apart": added_over_sequential("closed"),
            "inprocess_best_batch_size": best.batch_size if best else None,
            "compared_at_concurrency": at,
        }

    def cold_start(self) -> dict[str, float | str | None]:
        served = self.systems.get("asr-serve")
        if served is None or served.ready_s is None:
            return {}
        c1 = served.closed(1)
        # The first request is the mix's longest clip; its steady latency is the fair yardstick.
        same_clip = c1.p50_ms_by_clip.get(served.first_request_clip or "") if c1 else None
        return {
            "serve_run_to_ready_s": served.ready_s,
            "first_request_ms": served.first_request_ms,
            "first_request_clip": served.first_request_clip,
            "steady_p50_ms_c1": c1.p50_ms if c1 else None,
            "first_request_vs_steady_p50": _div(served.first_request_ms, c1.p50_ms if c1 else None),
            "steady_p50_ms_c1_same_clip": same_clip,
            "first_request_vs_same_clip_p50": _div(served.first_request_ms, same_clip),
        }


class Report(BaseModel):
    machine: str
    command: str
    date: str
    quick: bool
    gpu: bool
    wall_s: float | None = None
    engines: dict[str, EngineReport] = Field(default_factory=dict)

    def latest(self) -> dict:
        """``latest.json``: funasr's ratios at the top level, the embedded default's under
        ``whisper``; each engine's cold start and which targets were met beside them."""
        out: dict = {"machine": self.machine, "command": self.command, "date": self.date}
        for engine, rep in self.engines.items():
            ratios = {**rep.ratios(), "cold_start": rep.cold_start(), "targets_met": _met(rep)}
            if engine == "funasr":
                out.update(ratios)
            else:
                out[engine] = ratios
        out["gpu"] = "measured" if self.gpu else "not measured (no GPU in this run)"
        if self.quick:
            out["note"] = QUICK_NOTE
        return out


def _compare_level(rep: EngineReport) -> int | None:
    served = rep.systems.get("asr-serve")
    levels = [s.concurrency for s in served.levels if s.mode == "closed"] if served else []
    if COMPARE_AT in levels:
        return COMPARE_AT
    return max((c for c in levels if c is not None), default=None)


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _met(rep: EngineReport) -> dict[str, bool | None]:
    ratios = rep.ratios()
    met: dict[str, bool | None] = {}
    for key, (op, bound) in TARGETS.items():
        value = ratios.get(key)
        met[key] = None if value is None else (value >= bound if op == ">=" else value <= bound)
    return met


def command_line(module: str, argv: list[str] | None) -> str:
    """The command a results file records: as typed, or as ``main(argv)`` was called."""
    return shlex.join(["python", "-m", module, *(sys.argv[1:] if argv is None else argv)])


def machine_label(*, gpu: bool) -> str:
    """A short, file-name-safe label: CPU count and model, or the GPU's name."""
    if gpu:
        import torch

        name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no-cuda"
    else:
        name = platform.processor() or platform.machine()
        cpuinfo = Path("/proc/cpuinfo")
        if cpuinfo.exists():
            found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
            name = found.group(1) if found else name
        name = f"{os.cpu_count()}cpu-{name}"
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()[:60]


def write_report(report: Report, out_dir: Path) -> list[Path]:
    """``<date>-<machine>.json/.md/.png`` and a refreshed ``latest.json``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{report.date[:10]}-{report.machine}" + ("-quick" if report.quick else "")
    paths = [out_dir / f"{stem}.json", out_dir / f"{stem}.md", out_dir / f"{stem}.png"]
    full = report.model_dump(mode="json")
    full["latest"] = report.latest()
    paths[0].write_text(json.dumps(full, indent=1) + "\n")
    paths[1].write_text(markdown(report, paths[2].name))
    plot(report, paths[2])
    return [*paths, update_latest(out_dir, report.latest())]


def update_latest(out_dir: Path, updates: dict) -> Path:
    """Merge ``updates`` into ``latest.json``: each benchmark refreshes its own keys and
    leaves the others' (the main run's ratios, ``long_audio``, ``realtime``) as they are."""
    path = out_dir / "latest.json"
    latest = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps(latest | updates, indent=1) + "\n")
    return path


def _fmt(value: object, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: Report, png_name: str) -> str:
    lines = [
        f"# Benchmark {report.date} on `{report.machine}`",
        "",
        f"Command: `{report.command}`"
        + (f" ({report.wall_s / 60:.1f} min)" if report.wall_s else ""),
        "",
        f"![throughput and latency]({png_name})",
        "",
        "GPU: " + ("measured." if report.gpu else "not measured (this run had no GPU)."),
        "",
    ]
    if report.quick:
        lines += [QUICK_NOTE, ""]
    for engine, rep in report.engines.items():
        ratios, met = rep.ratios(), _met(rep)
        lines += [f"## {engine}: `{rep.model['name']}` ({rep.model['engine']})", ""]
        lines += ["| ratio | value | target | met |", "|---|---|---|---|"]
        for key, value in ratios.items():
            target = TARGETS.get(key)
            bound = f"{target[0]} {target[1]:g}" if target else ""
            ok = {True: "yes", False: "**no**", None: "-"}[met.get(key)] if target else ""
            lines.append(f"| `{key}` | {_fmt(value)} | {bound} | {ok} |")
        cold = rep.cold_start()
        if cold:
            lines += [
                "",
                "Cold start (asr-serve): "
                + ", ".join(f"{k} = {_fmt(v, 1)}" for k, v in cold.items()),
            ]
        if rep.generated_tokens:
            lines += [
                "",
                f"Tokens generated per clip (cap {rep.model['max_new_tokens']}): "
                f"{rep.generated_tokens}",
            ]
        lines += [
            "",
            "| system | level | req/s | RTFx | P50 ms | P95 ms | P99 ms | errors | mean batch |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        results = ([rep.inprocess] if rep.inprocess else []) + list(rep.systems.values())
        for res in results:
            if res.error:
                lines.append(f"| {res.system} | failed: {res.error[:300]!r} | | | | | | | |")
            for s in res.levels:
                level = {
                    "closed": f"c{s.concurrency}",
                    "open": f"{_fmt(s.rate_rps)}/s open",
                    "inprocess": f"batch {s.batch_size}",
                    "turns": "c1 taking turns",
                }[s.mode]
                sizes = s.batch_sizes or []
                mean = _fmt(sum(sizes) / len(sizes), 1) if sizes else "-"
                lines.append(
                    f"| {res.system} | {level} | {s.throughput_rps:.2f} | {s.rtfx:.1f} | "
                    f"{s.p50_ms:.0f} | {s.p95_ms:.0f} | {s.p99_ms:.0f} | "
                    f"{s.errors or ''} | {mean} |"
                )
        if rep.turns_error:
            failed = f"failed: {rep.turns_error[:300]!r}"
            lines.append(f"| one client taking turns | {failed} | | | | | | | |")
        lines += [
            "",
            "Start-up to ready (s): "
            + ", ".join(
                f"{r.system} {_fmt(r.ready_s, 1)}" for r in results if r.ready_s is not None
            ),
            "",
        ]
    return "\n".join(lines) + "\n"


def plot(report: Report, path: Path) -> None:
    """Per engine: throughput vs concurrency per system, and latency percentiles at c16."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    engines = list(report.engines.values())
    fig, axes = plt.subplots(len(engines), 2, figsize=(13, 4.5 * len(engines)), squeeze=False)
    for row, rep in zip(axes, engines, strict=True):
        thr, lat = row
        for name, res in rep.systems.items():
            closed = [s for s in res.levels if s.mode == "closed"]
            if closed:
                thr.plot(
                    [s.concurrency for s in closed],
                    [s.rtfx for s in closed],
                    marker="o",
                    label=name,
                )
        if rep.inprocess:
            for s in rep.inprocess.levels:
                if s.batch_size == 1 or s == max(rep.inprocess.levels, key=lambda x: x.rtfx):
                    thr.axhline(s.rtfx, linestyle="--", color="grey", linewidth=0.8)
                    thr.annotate(f"in-process batch {s.batch_size}", (1, s.rtfx), fontsize=8)
        thr.set_xscale("log", base=2)
        thr.set_xlabel("concurrent clients")
        thr.set_ylabel("audio seconds per second (RTFx)")
        thr.set_title(f"{rep.engine}: throughput")
        thr.legend(fontsize=8)

        at = _compare_level(rep)
        names, values = [], []
        for name, res in rep.systems.items():
            stats = res.closed(at) if at is not None else None
            if stats and stats.ok:
                names.append(name)
                values.append((stats.p50_ms, stats.p95_ms, stats.p99_ms))
        for i, label in enumerate(("P50", "P95", "P99")):
            lat.bar(
                [x + (i - 1) * 0.27 for x in range(len(names))],
                [v[i] for v in values],
                width=0.27,
                label=label,
            )
        lat.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
        lat.set_ylabel("latency (ms)")
        lat.set_title(f"{rep.engine}: latency at {at} concurrent clients")
        lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
