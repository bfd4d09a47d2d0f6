"""``python -m benchmarks.run``: every system, same model, same audio, one run; then the report.

python -m benchmarks.run                       # full run, both engines (~15 min, 2 cores)
python -m benchmarks.run --quick               # a few requests per system (smoke test)
python -m benchmarks.run --engines funasr --systems asr-serve,sequential
python -m benchmarks.run --gpu                 # full-size random Fun-ASR-Nano, fp16, GPU
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import loadgen
from benchmarks.audio import Clip, make_mix
from benchmarks.plan import ENGINES, SYSTEMS, EnginePlan, make_plan
from benchmarks.report import (
    EngineReport,
    Report,
    SystemResult,
    command_line,
    machine_label,
    write_report,
)
from benchmarks.systems.base import HTTPSystem

RESULTS_DIR = Path(__file__).resolve().parent / "results"
#: Measured once more at one client taking turns, both up (:func:`measure_turns`).
TURNS = ("asr-serve", "sequential")


def _system_factories(plan: EnginePlan, log_dir: Path) -> dict[str, Callable[[], HTTPSystem]]:
    from benchmarks.systems import baselines
    from benchmarks.systems.served import ServedSystem, ServeRun

    def served(name: str) -> HTTPSystem:
        # Each application in a `serve run` of its own, as the other systems run alone: on
        # two cores a second application's idle replicas slow the one measured.
        return ServedSystem(name, ServeRun(log_dir, plan.model, plan.num_gpus, system=name))

    return {
        "asr-serve": lambda: served("asr-serve"),
        "asr-serve-scaled": lambda: served("asr-serve-scaled"),
        "sequential": lambda: baselines.sequential(log_dir, plan.model),
        "seed-style": lambda: baselines.seed_style(log_dir, plan.model),
        "funasr-server": lambda: baselines.FunASRServer(log_dir, plan.model),
        "naive": lambda: baselines.naive(log_dir, plan.model),
    }


def measure_system(
    system: HTTPSystem,
    plan: EnginePlan,
    clips: list[Clip],
    open_rate: float,
    started: Future[float] | None = None,
) -> SystemResult:
    """Start (or wait for ``started``), time the first request, run every level, stop."""
    result = SystemResult(system=system.name)
    try:
        result.ready_s = started.result() if started else system.start()
        first, _ = asyncio.run(
            loadgen.closed_loop(system.url, clips[-1:], 1, 1, fields=system.fields)
        )
        result.first_request_ms = first[0].latency_s * 1000
        result.first_request_clip = first[0].clip
        system.batch_sizes()  # forget the first request's batch
        naive = system.name == "naive"
        levels = [1] if naive else plan.concurrencies
        for c in levels:
            n = plan.naive_requests if naive else plan.n_requests(c)
            records, elapsed = asyncio.run(
                loadgen.closed_loop(system.url, clips, c, n, fields=system.fields)
            )
            stats = loadgen.summarize(system.name, "closed", records, elapsed, concurrency=c)
            _record(result, system, stats, f"c{c}")
        if not naive:
            n = max(1, round(open_rate * plan.open_seconds))
            records, elapsed = asyncio.run(
                loadgen.open_loop(system.url, clips, open_rate, n, fields=system.fields)
            )
            stats = loadgen.summarize(system.name, "open", records, elapsed, rate_rps=open_rate)
            _record(result, system, stats, f"open {open_rate:.2f}/s")
    except Exception as exc:  # one broken system must not lose the others' numbers
        result.error = f"{type(exc).__name__}: {exc}"
        print(f"  {system.name} FAILED: {result.error[:2000]}", flush=True)
    finally:
        system.stop()
    return result


def measure_turns(
    plan: EnginePlan, log_dir: Path, clips: list[Clip], results: dict[str, SystemResult]
) -> str | None:
    """One client taking turns between fresh instances of :data:`TURNS`, appended to their
    results as a ``turns`` level; the error if it failed. Measured one after the other,
    minutes apart, their one-client P50s also differ by how the machine's speed drifted in
    between, which on a shared 2-core machine moves more than the path being compared
    (benchmarks/README.md); taking turns, the drift falls on both alike."""
    log_dir.mkdir(exist_ok=True)
    factories = _system_factories(plan, log_dir)
    systems = [factories[name]() for name in TURNS]
    try:
        with ThreadPoolExecutor(len(systems)) as pool:  # at once: nothing is measured yet
            list(pool.map(lambda system: system.start(), systems))
        urls, fields = [s.url for s in systems], [s.fields for s in systems]
        asyncio.run(loadgen.taking_turns(urls, clips, len(clips), fields=fields))  # warm-up
        turns = asyncio.run(loadgen.taking_turns(urls, clips, plan.turn_requests, fields=fields))
        for system, records in zip(systems, turns, strict=True):
            busy_s = sum(r.latency_s for r in records)  # its own share of the time
            stats = loadgen.summarize(system.name, "turns", records, busy_s, concurrency=1)
            results[system.name].levels.append(stats)
            print(f"  {system.name} c1 taking turns: {_line(stats)}", flush=True)
    except Exception as exc:  # the levels measured apart still count
        error = f"{type(exc).__name__}: {exc}"
        print(f"  taking turns FAILED: {error[:2000]}", flush=True)
        return error
    finally:
        for system in systems:
            system.stop()
    return None


def _record(result: SystemResult, system: HTTPSystem, stats: loadgen.RunStats, label: str) -> None:
    """Attach the batches the level formed, keep the level, print its line."""
    stats.batch_sizes = system.batch_sizes()
    result.levels.append(stats)
    print(f"  {system.name} {label}: {_line(stats)}", flush=True)


def _line(s: loadgen.RunStats) -> str:
    errors = f" errors={s.errors}" if s.errors else ""
    return (
        f"{s.throughput_rps:.2f} req/s, RTFx {s.rtfx:.1f}, "
        f"P50 {s.p50_ms:.0f} ms, P99 {s.p99_ms:.0f} ms{errors}"
    )


def run_engine(plan: EnginePlan, log_dir: Path, *, parallel_start: bool) -> EngineReport:
    from benchmarks.systems.inprocess import run_inprocess

    clips = make_mix(plan.clip_seconds)
    factories = _system_factories(plan, log_dir)
    systems = [factories[name]() for name in plan.systems]
    pool = ThreadPoolExecutor(max_workers=len(systems) or 1)
    # Quick runs start every system at once, beside the in-process run, and measure each
    # when it is ready (fast; start-up, in-process and every figure unfair); full runs
    # start them one by one, so nothing is measured beside a system that is loading.
    starts = {s.name: pool.submit(s.start) for s in systems} if parallel_start else {}
    report = EngineReport(
        engine=plan.engine,
        model=plan.model.model_dump(mode="json"),
        plan=plan.model_dump(mode="json", exclude={"model"}),
    )
    print(f"[{plan.engine}] inprocess", flush=True)
    n = plan.n_requests(max(plan.inprocess_batch_sizes))
    load_s, tokens, levels = run_inprocess(plan.model, clips, plan.inprocess_batch_sizes, n)
    report.inprocess = SystemResult(system="inprocess", ready_s=load_s, levels=levels)
    report.generated_tokens = tokens
    for s in levels:
        print(f"  inprocess b{s.batch_size}: {_line(s)}", flush=True)
    open_rate = plan.open_load * max(s.throughput_rps for s in levels)

    # Started at once, each is measured as soon as it is ready (the others go on starting).
    by_start = {future: s for s in systems if (future := starts.get(s.name))}
    order = (by_start[f] for f in as_completed(by_start)) if parallel_start else systems
    with pool:
        for system in order:
            print(f"[{plan.engine}] {system.name}", flush=True)
            report.systems[system.name] = measure_system(
                system, plan, clips, open_rate, starts.get(system.name)
            )
    report.systems = {s.name: report.systems[s.name] for s in systems}
    if set(TURNS) <= report.systems.keys():
        print(f"[{plan.engine}] {' and '.join(TURNS)}, taking turns", flush=True)
        report.turns_error = measure_turns(plan, log_dir / "turns", clips, report.systems)
    return report


def main(argv: list[str] | None = None) -> Report:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="a few requests per system")
    parser.add_argument("--engines", default=",".join(ENGINES), help="funasr,whisper")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=",".join(SYSTEMS))
    parser.add_argument("--gpu", action="store_true", help="full-size model on the GPU, fp16")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    args = parser.parse_args(argv)
    engines = [e for e in args.engines.split(",") if e]
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(engines) - set(ENGINES) | set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown engine or system: {', '.join(sorted(unknown))}")

    funasr_dir = None
    if "funasr" in engines:
        if args.gpu:
            from benchmarks.gpu_model import ensure_full_size_model

            funasr_dir = ensure_full_size_model()
        else:
            from devtools.tiny_model import ensure_tiny_model

            funasr_dir = ensure_tiny_model()

    started = time.perf_counter()
    report = Report(
        machine=machine_label(gpu=args.gpu),
        command=command_line("benchmarks.run", argv),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        quick=args.quick,
        gpu=args.gpu,
    )
    with tempfile.TemporaryDirectory(prefix="asr-bench-") as tmp:
        for engine in engines:
            plan = make_plan(
                engine, quick=args.quick, gpu=args.gpu, systems=systems, funasr_dir=funasr_dir
            )
            report.engines[engine] = run_engine(plan, Path(tmp), parallel_start=args.quick)
    report.wall_s = time.perf_counter() - started
    paths = write_report(report, args.out)
    print("wrote " + ", ".join(str(p) for p in paths), flush=True)
    return report


if __name__ == "__main__":
    main()
