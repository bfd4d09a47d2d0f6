"""The baselines: our own servers under uvicorn, and funasr's bundled OpenAI-style server."""

from __future__ import annotations

import tempfile
from pathlib import Path

from asr_serve.config import ModelConfig
from benchmarks.servers.common import MODEL_ENV, READY_DIR_ENV
from benchmarks.systems.base import PYTHON, HTTPSystem, ServerProcess, http_ok

#: Loading a model per process is slow on a busy 2-core machine; be generous.
START_TIMEOUT_S = 300.0


class UvicornSystem(HTTPSystem):
    """``sequential``, ``naive`` or ``seed-style``: a module of ``benchmarks.servers``."""

    def __init__(
        self,
        name: str,
        log_dir: Path,
        model: ModelConfig,
        module: str,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(name, log_dir)
        self.workers = workers
        self.ready_dir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=log_dir))
        argv = [PYTHON, "-m", "uvicorn", f"benchmarks.servers.{module}:app"]
        argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        argv += ["--log-level", "warning", "--no-access-log"]
        server_env = {MODEL_ENV: model.model_dump_json(), READY_DIR_ENV: str(self.ready_dir)}
        self.process = ServerProcess(argv, {**server_env, **(env or {})}, log_dir / f"{name}.log")

    def _ready(self) -> bool:
        warm = sum(1 for _ in self.ready_dir.iterdir())
        return warm >= self.workers and http_ok(self.base_url + "/ready")

    def start(self) -> float:
        self.process.start()
        return self.process.wait(self._ready, START_TIMEOUT_S)

    def stop(self) -> None:
        self.process.stop()


def sequential(log_dir: Path, model: ModelConfig) -> UvicornSystem:
    return UvicornSystem("sequential", log_dir, model, "sequential")


def naive(log_dir: Path, model: ModelConfig) -> UvicornSystem:
    return UvicornSystem("naive", log_dir, model, "sequential", env={"BENCH_LOAD_PER_REQUEST": "1"})


def seed_style(log_dir: Path, model: ModelConfig) -> UvicornSystem:
    return UvicornSystem("seed-style", log_dir, model, "seed_style", workers=2)


class FunASRServer(HTTPSystem):
    """``funasr.bin.server`` (funasr's OpenAI-compatible server) on the same model directory.

    ``--model-path`` makes it load that directory with ``AutoModel`` as model ``custom``
    (no VAD, ``batch_size=1`` per request, the checkpoint's own ``max_length``); it
    answers ``/health`` only after that load, since it loads before binding its port.
    """

    fields = {"model": "custom"}

    def __init__(self, log_dir: Path, model: ModelConfig) -> None:
        super().__init__("funasr-server", log_dir)
        argv = [PYTHON, "-m", "funasr.bin.server", "--host", "127.0.0.1"]
        argv += ["--port", str(self.port), "--device", model.device, "--model-path", model.model]
        self.process = ServerProcess(argv, {}, log_dir / "funasr-server.log")

    def start(self) -> float:
        self.process.start()
        return self.process.wait(lambda: http_ok(self.base_url + "/health"), START_TIMEOUT_S)

    def stop(self) -> None:
        self.process.stop()
