"""Looking inside a running Serve replica (or proxy) from a test: find its actor, read its
memory.

The memory figures come from the replica's own ``/proc/self/status`` (Linux), read by a
function the replica runs through Ray's ``__ray_call__``: the test measures the process
that really decoded the uploads, not an estimate.
"""

from __future__ import annotations

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
