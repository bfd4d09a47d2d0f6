"""The files in cluster/ agree with serve_config.yaml, pyproject.toml and the schemas of what
reads them: KubeRay's RayService CRD, Ray's cluster launcher, Ray Serve, Grafana. No Ray here.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import ServeDeploySchema

from asr_serve.config import AppConfig
from tests.cluster import grafana

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
SERVE_CONFIG_TEXT = (ROOT / "serve_config.yaml").read_text()
SERVE_CONFIG = yaml.safe_load(SERVE_CONFIG_TEXT)
MANIFEST = yaml.safe_load((CLUSTER / "kuberay" / "rayservice.yaml").read_text())
LAUNCHER = yaml.safe_load((CLUSTER / "launcher" / "aws.yaml").read_text())
DOCKERFILE = (CLUSTER / "Dockerfile").read_text()
#: KubeRay v1.7.0's RayService schema (ray.io_rayservices.yaml), ray.io/v1.
CRD_SCHEMA = json.loads(
    (Path(__file__).parent / "kuberay-rayservice-v1.7.0.schema.json").read_text()
)
_DEPENDENCIES = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _pin(package: str) -> str:
    """The exact version pyproject.toml pins ``package`` (extras ignored) to."""
    for spec in _DEPENDENCIES:
        match = re.fullmatch(rf"{re.escape(package)}(?:\[[^\]]*\])?==([\w.]+)", spec)
        if match:
            return match.group(1)
    raise AssertionError(f"pyproject.toml does not pin {package}")


# --- KubeRay ------------------------------------------------------------------------------


def test_rayservice_manifest_is_rendered_from_serve_config() -> None:
    render = subprocess.run(
        [sys.executable, str(CLUSTER / "render_rayservice.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert render.returncode == 0, render.stderr
    assert MANIFEST["spec"]["serveConfigV2"] == SERVE_CONFIG_TEXT


def _unknown_fields(doc: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Keys the schema does not define: the API server would drop them without a word."""
    if isinstance(doc, list) and "items" in schema:
        return [f for i, v in enumerate(doc) for f in _unknown_fields(v, schema["items"], path)]
    if not isinstance(doc, dict) or "properties" not in schema:
        return []
    props = schema["properties"]
    return [
        f
        for key, value in doc.items()
        for f in (
            _unknown_fields(value, props[key], f"{path}.{key}")
            if key in props
            else [f"{path}.{key}"]
        )
    ]


def test_rayservice_matches_kuberay_crd() -> None:
    jsonschema.validate(MANIFEST, CRD_SCHEMA)
    assert _unknown_fields(MANIFEST, CRD_SCHEMA) == []
    assert _unknown_fields({"spec": {"serveConfigV3": ""}}, CRD_SCHEMA) == [".spec.serveConfigV3"]


def test_rayservice_serve_config_passes_serve_and_app_validation() -> None:
    config = yaml.safe_load(MANIFEST["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(config)
    for app in config["applications"]:
        app_config = AppConfig.model_validate(app["args"])
        graph = {"Ingress", "AudioDecoder"} | {m.deployment_name for m in app_config.models}
        graph |= {"Speakers"} if app_config.speakers.enabled else set()
        assert {d["name"] for d in app["deployments"]} <= graph


def test_rayservice_autoscales_and_matches_the_image() -> None:
    cluster = MANIFEST["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["rayVersion"] == _pin("ray")
    pods = [cluster["headGroupSpec"]] + cluster["workerGroupSpecs"]
    images = {c["image"] for p in pods for c in p["template"]["spec"]["containers"]}
    assert len(images) == 1, images
    # Head: no replicas; Serve's autoscaler needs worker groups it may grow.
    assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    for group in cluster["workerGroupSpecs"]:
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


# --- Capacity: every deployment of serve_config.yaml fits the node types ---------------------


@dataclass(frozen=True)
class NodeType:
    name: str
    cpus: float
    gpus: float
    max_nodes: int


def _deployments() -> list[dict[str, Any]]:
    return [d for app in SERVE_CONFIG["applications"] for d in app["deployments"]]


def _max_replicas(deployment: dict[str, Any]) -> int:
    return deployment.get("autoscaling_config", {}).get("max_replicas") or deployment.get(
        "num_replicas", 1
    )


def _assert_fits(workers: list[NodeType]) -> None:
    """GPU deployments reach max_replicas on GPU nodes; CPU ones, together, on CPU nodes."""
    gpu_nodes = [n for n in workers if n.gpus > 0]
    cpu_nodes = [n for n in workers if n.gpus == 0]
    cpu_demand = 0.0
    for d in _deployments():
        # Serve replaces ray_actor_options whole: each deployment must state its resources.
        opts = d["ray_actor_options"]
        cpus, gpus = opts.get("num_cpus", 1), opts.get("num_gpus", 0)
        if gpus:
            per_node = [min(n.gpus // gpus, n.cpus // cpus) * n.max_nodes for n in gpu_nodes]
            assert max(per_node, default=0) >= _max_replicas(d), (d["name"], gpu_nodes)
        else:
            assert any(n.cpus >= cpus for n in cpu_nodes), (d["name"], cpu_nodes)
            cpu_demand += cpus * _max_replicas(d)
    assert cpu_demand <= sum(n.cpus * n.max_nodes for n in cpu_nodes)


def _quantity(value: str) -> float:
    """A Kubernetes CPU quantity: ``"8"`` or ``"500m"``."""
    return float(value[:-1]) / 1000 if value.endswith("m") else float(value)


def test_rayservice_worker_groups_fit_serve_config() -> None:
    workers = []
    for group in MANIFEST["spec"]["rayClusterConfig"]["workerGroupSpecs"]:
        (container,) = group["template"]["spec"]["containers"]
        limits, requests = container["resources"]["limits"], container["resources"]["requests"]
        gpus = int(limits.get("nvidia.com/gpu", 0))
        assert int(requests.get("nvidia.com/gpu", 0)) == gpus
        workers.append(
            NodeType(group["groupName"], _quantity(limits["cpu"]), gpus, group["maxReplicas"])
        )
    assert any(w.gpus for w in workers) and any(not w.gpus for w in workers)
    _assert_fits(workers)


# --- Cluster launcher -----------------------------------------------------------------------


def test_launcher_config_passes_ray_validation() -> None:
    validate_config(prepare_config(copy.deepcopy(LAUNCHER)))


def test_launcher_node_types_fit_serve_config() -> None:
    types = LAUNCHER["available_node_types"]
    assert types[LAUNCHER["head_node_type"]]["resources"] == {"CPU": 0}
    workers = [
        NodeType(name, t["resources"].get("CPU", 0), t["resources"].get("GPU", 0), t["max_workers"])
        for name, t in types.items()
        if name != LAUNCHER["head_node_type"]
    ]
    assert any(w.gpus for w in workers) and any(not w.gpus for w in workers)
    assert sum(w.max_nodes for w in workers) <= LAUNCHER["max_workers"]
    _assert_fits(workers)


# --- Image ----------------------------------------------------------------------------------


def _base_image() -> str:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))
    (image,) = re.findall(r"^FROM (\S+)$", DOCKERFILE, re.MULTILINE)
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)


def test_image_is_ray_of_the_pinned_version_with_the_pinned_torch() -> None:
    assert _base_image() == f"rayproject/ray:{_pin('ray')}-py311-cu128"
    torch = f"torch=={_pin('torch')} torchaudio=={_pin('torchaudio')}"
    assert torch in DOCKERFILE
    # The cluster launcher installs the same into the same image.
    assert LAUNCHER["docker"]["image"] == _base_image()
    assert any(torch in c for c in LAUNCHER["setup_commands"])


def test_image_copies_only_what_the_dockerignore_lets_through() -> None:
    allowed = {
        line[1:]
        for line in (CLUSTER / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for sources in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, re.MULTILINE):
        for source in sources.split():
            assert source in allowed and (ROOT / source).exists(), source


# --- Grafana --------------------------------------------------------------------------------


def _ray_series() -> set[str]:
    """Series Ray exports: metrics its source defines, and what its own dashboards query."""
    base = Path(ray.__file__).parent
    defined = re.compile(r'\b(Gauge|Counter|Histogram)\(\s*(?:name\s*=\s*)?"((?:serve|node)_\w+)"')
    series = set()
    for folder in ("serve", "dashboard/modules/reporter"):
        for path in (base / folder).rglob("*.py"):
            for kind, name in defined.findall(path.read_text()):
                series |= grafana.exported_series(name, kind)
    for path in (base / "dashboard" / "modules" / "metrics" / "dashboards").glob("*_panels.py"):
        series |= grafana.series_in(path.read_text())
    return series


def test_dashboard_is_well_formed() -> None:
    board = grafana.dashboard()
    panels = board["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    assert {v["name"] for v in board["templating"]["list"]} == {"datasource", "application"}
    for panel in panels:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(set(ref_ids)) == len(ref_ids) and all(t["expr"] for t in panel["targets"])


def test_dashboard_queries_only_series_that_exist() -> None:
    known = grafana.custom_series() | _ray_series()
    for expr in grafana.queries():
        assert grafana.series_in(expr) <= known, (expr, grafana.series_in(expr) - known)


@pytest.mark.parametrize(
    "needed",
    [
        "histogram_quantile(0.5, sum(rate(ray_serve_http_request_latency_ms_bucket",
        "histogram_quantile(0.95, sum(rate(ray_serve_http_request_latency_ms_bucket",
        "histogram_quantile(0.99, sum(rate(ray_serve_http_request_latency_ms_bucket",
        "ray_serve_num_http_requests_total",
        "ray_serve_num_http_error_requests_total",
        "ray_serve_deployment_replica_healthy",
        "ray_node_gpus_utilization",
        "ray_node_gram_used",
    ],
)
def test_dashboard_has_the_operator_panels(needed: str) -> None:
    assert any(needed in expr for expr in grafana.queries())


def test_dashboard_charts_every_project_metric() -> None:
    queried = set().union(*map(grafana.series_in, grafana.queries()))
    for name, kind in grafana.custom_metrics().items():
        assert grafana.exported_series(name, kind) & queried, name
