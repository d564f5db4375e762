"""The package's import graph, read from the source: no cycles, and the package root stays light.

Every ``import`` and ``from ... import`` that runs when a module is imported counts (module
level, including ``try``/``if`` blocks); imports inside functions (the deferred imports that
keep torch and the runtimes off the deployment path) and ``if TYPE_CHECKING:`` blocks are
left out. Importing ``a.b.c`` also imports the
packages ``a.b`` and ``a`` (their ``__init__``), so those count as edges too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "sr_edge"


def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return out


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def import_graph() -> dict[str, set[str]]:
    """module -> the sr_edge modules it imports."""
    mods = _modules()

    def known(name: str) -> str | None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, (path, is_pkg) in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        deferred = {
            id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in ast.walk(f)
        }
        for node in ast.walk(tree):
            if id(node) in skip or id(node) in deferred:
                continue
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                if prefix.split(".")[0] == "sr_edge":
                    targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in mods else prefix for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "sr_edge"]
            for target in targets:
                found = known(target)
                if found is not None and found != mod:
                    edges[mod].add(found)  # named explicitly: counts even if it is mod's own package
                while found is not None and "." in found:  # the packages Python imports on the way
                    found = known(found.rsplit(".", 1)[0])
                    if found is not None and found != mod and not mod.startswith(found + "."):
                        edges[mod].add(found)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_real_imports() -> None:
    edges = import_graph()
    assert "sr_edge.types" in edges["sr_edge.upscale"]  # module level
    assert "sr_edge.models" not in edges["sr_edge.source"]  # inside a function: deferred
    assert "sr_edge.bundle" in edges["sr_edge.source"]
    assert "sr_edge.backends.api" in edges["sr_edge.backends"]
    assert "sr_edge.version" in edges["sr_edge.cli"]
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_import_cycles() -> None:
    found = cycles(import_graph())
    assert found == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_stage_imports_the_package_root() -> None:
    importers = sorted(m for m, targets in import_graph().items() if "sr_edge" in targets)
    assert importers == []


def test_importing_sr_edge_loads_no_torch_onnx_or_runtime() -> None:
    code = (
        "import sys, sr_edge, sr_edge.cli; "
        "heavy = [m for m in ('torch', 'onnx', 'onnxruntime', 'openvino', 'tensorrt', 'cv2') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stdout + done.stderr
