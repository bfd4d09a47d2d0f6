"""The package's layering: config is the leaf, no import cycles, engines stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import asr_serve

PACKAGE = Path(asr_serve.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path) -> set[str]:
    """``asr_serve`` modules ``path`` imports at runtime (``if TYPE_CHECKING:`` blocks aside),
    at module level or inside functions."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("asr_serve"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asr_serve"):
            assert node.module is not None
            for alias in node.names:  # `from asr_serve.api import auth` imports a module
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: _runtime_imports(path) & set(MODULES) for name, path in MODULES.items()}


def _cycle() -> list[str] | None:
    """One import cycle among the package's modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                return [*path[path.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[node] = 2
        return None

    for name in sorted(GRAPH):
        if name not in state and (found := visit(name)):
            return found
    return None


def test_no_import_cycles() -> None:
    assert _cycle() is None, " -> ".join(_cycle() or [])


def test_the_walk_sees_real_edges() -> None:
    """Guards the test above against a walker that finds nothing."""
    assert "asr_serve.config" in GRAPH["asr_serve.engines.base"]
    assert "asr_serve.serving.pipeline" in GRAPH["asr_serve.deployments.ingress"]
    assert "asr_serve.metrics" in GRAPH["asr_serve.deployments.asr"]  # imported in a method


def test_config_is_the_leaf() -> None:
    assert GRAPH["asr_serve.config"] == set()
    assert GRAPH["asr_serve.errors"] == set()


def test_an_engine_does_not_import_the_http_side() -> None:
    """An ASR replica reads its config and runs its engine; Redis and Starlette are the
    ingress's business."""
    code = (
        "import sys, asr_serve.engines.whisper, asr_serve.engines.funasr; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'redis', 'starlette'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_test_helpers_are_not_shipped() -> None:
    shipped = {p.stem for p in (PACKAGE / "testing").glob("*.py")}
    assert shipped <= {
        "__init__",
        "conversation",
        "long_audio",
        "net",
        "speech",
        "text",
        "tiny_model",
    }
