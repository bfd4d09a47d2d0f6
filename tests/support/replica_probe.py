"""Looking inside a running Serve replica (or proxy) from a test: find its actor, read its
memory.

The memory figures come from the replica's own ``/proc/self/status`` (Linux), read by a
function the replica runs through Ray's ``__ray_call__``: the test measures the process
that really decoded the uploads, not an estimate. What a replica's RSS does after a burst
is the allocator's business (arenas grow, plateau, shrink back: tens of MiB either way over
rounds of live clients), so whether objects are *kept* is asked of ``tracemalloc``, which
sees every Python object and NumPy buffer allocated since it started and still alive.
"""

from __future__ import annotations

import gc
import tracemalloc

import ray
from pydantic import BaseModel


class ProcessMemory(BaseModel):
    """Resident set now and its peak since the last reset, in MiB."""

    rss_mib: float
    peak_mib: float


def replica_actors(app: str, deployment: str) -> list[ray.actor.ActorHandle]:
    """Every live replica actor of ``deployment`` in application ``app``."""
    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return [
        ray.get_actor(a["name"], namespace=a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith(prefix)
    ]


def read_own_memory(_replica: object, reset_peak: bool) -> ProcessMemory:
    """This process's memory; a replica runs it via ``__ray_call__`` (hence the instance).

    Resetting first makes the peak cover only what follows.
    """
    if reset_peak:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current resident set
    with open("/proc/self/status") as f:
        kib = {
            k: int(v.split()[0])
            for k, v in (line.split(":", 1) for line in f)
            if k in ("VmRSS", "VmHWM")
        }
    return ProcessMemory(rss_mib=kib["VmRSS"] / 1024, peak_mib=kib["VmHWM"] / 1024)


def replica_memory(actor: ray.actor.ActorHandle, *, reset_peak: bool = False) -> ProcessMemory:
    """The replica's (or proxy's) memory, optionally resetting its peak first."""
    return ray.get(actor.__ray_call__.remote(read_own_memory, reset_peak))


def proxy_actor() -> ray.actor.ActorHandle:
    """This (one-node) cluster's Serve HTTP proxy, which holds the client connections."""
    (proxy,) = [
        ray.get_actor(a["name"], namespace=a["namespace"])
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_PROXY_ACTOR")
    ]
    return proxy


class Retained(BaseModel):
    """What was allocated since :func:`start_tracing` and is still alive, after a full
    collection: its size and the largest allocation sites (for the failure message)."""

    mib: float
    top: list[str]


def _start_tracing(_replica: object) -> None:
    # Once started, tracing is never stopped: on Python 3.11 ``tracemalloc.stop()`` frees
    # the traceback buffer that another thread's allocation hook, waiting for the GIL, goes
    # on to use (CPython gh-128679, fixed from 3.12): a Ray I/O thread of the ingress died
    # of it in ``traceback_new``. Clearing the traces (under the GIL) frees nothing the
    # hooks use, and counts from here as a fresh start would.
    if tracemalloc.is_tracing():
        tracemalloc.clear_traces()
    else:
        tracemalloc.start(8)


def _retained(_replica: object, sites: int) -> Retained:
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    mib = tracemalloc.get_traced_memory()[0] / 2**20
    return Retained(mib=mib, top=[str(s) for s in snapshot.statistics("lineno")[:sites]])


def start_tracing(actor: ray.actor.ActorHandle) -> None:
    """Have the replica trace its allocations from now on (slows it a little, and stays
    on for the replica's life)."""
    ray.get(actor.__ray_call__.remote(_start_tracing))


def retained(actor: ray.actor.ActorHandle, *, sites: int = 8) -> Retained:
    """What the replica allocated since the last :func:`start_tracing` and still holds."""
    return ray.get(actor.__ray_call__.remote(_retained, sites))
