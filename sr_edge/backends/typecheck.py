"""Type-check all of ``sr_edge``, TensorRT calls against ``tensorrt-stubs``: ``python -m sr_edge.backends.typecheck``.

TensorRT cannot be installed on the development machines, so mypy against the stubs is
how the TensorRT adapter's calls are checked. Two wrinkles make a plain ``mypy`` run
check nothing:

- ``tensorrt-stubs`` installs ``tensorrt/__init__.pyi`` and ``tensorrt_bindings/*.pyi``
  without a ``py.typed`` marker, so mypy skips them and types ``tensorrt`` as ``Any``
  (every call "passes");
- the generated stubs (10.8 to 10.13) contain a few lines that are not valid Python
  (plugin methods with a parameter named ``in``; a non-default parameter after a default
  one), which stop mypy with syntax errors once it does read them.

So this tool copies the stubs into ``.mypy_cache/sr-edge-trt-stubs``, replaces each
unparsable ``def`` signature (five plugin and scale-layer methods sr-edge never calls)
with ``(*args: Any, **kwargs: Any)``, runs mypy with that folder on ``MYPYPATH``, and
then type-checks a canary with deliberate API mistakes that must be rejected, proving
the stubs were in force. Exit status 0 only when the package is clean and the canary
is caught.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

PACKAGES = ("tensorrt", "tensorrt_bindings")
TARGETS = ("sr_edge",)
_CANARY = """
import tensorrt as trt
logger = trt.Logger(trt.Logger.WARNING)
config = trt.Builder(logger).create_builder_config()
config.set_flag("FP16")  # must be rejected: a BuilderFlag, not a string
ctx: trt.IExecutionContext
ctx.execute_async_v3("stream")  # must be rejected: the stream handle is an int
"""
_DEF = re.compile(r"^(\s*)def (\w+)\((.*)\)(\s*->\s*[^:]+)?:(.*)$")


def _stub_dirs() -> list[Path]:
    found = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        locations = list(spec.submodule_search_locations or []) if spec else []
        stub = next((Path(p) for p in locations if (Path(p) / "__init__.pyi").is_file()), None)
        if stub is None:
            raise SystemExit(
                f"typecheck: {name} stubs not found; install them with pip install --no-deps 'tensorrt-stubs>=10,<11'"
            )
        found.append(stub)
    return found


def repair_stub(text: str) -> tuple[str, int]:
    """Replace every ``def`` line Python cannot parse with a catch-all signature; (text, lines fixed)."""
    lines = text.splitlines()
    fixed = 0
    for _ in range(200):
        try:
            ast.parse("\n".join(lines))
            return "\n".join(lines) + "\n", fixed
        except SyntaxError as e:
            i = (e.lineno or 1) - 1
            m = _DEF.match(lines[i]) if 0 <= i < len(lines) else None
            if m is None:
                line = lines[i] if 0 <= i < len(lines) else ""
                raise SystemExit(f"typecheck: cannot repair stub line {i + 1}: {line}") from None
            indent, name, _, ret, tail = m.groups()
            lines[i] = f"{indent}def {name}(*args: typing.Any, **kwargs: typing.Any){ret or ''}:{tail}"
            fixed += 1
    raise SystemExit("typecheck: too many unparsable lines in the TensorRT stubs")


def prepare_stubs(dest: Path) -> int:
    """Copy the TensorRT stubs into ``dest`` with unparsable lines repaired; returns lines fixed."""
    fixed = 0
    for src in _stub_dirs():
        out = dest / src.name
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        for f in src.glob("*.pyi"):
            text = f.read_text()
            # The generated stubs have internal inconsistencies (a module-level name `bool`
            # shadowing the builtin, `...` return types) that are theirs to fix, not ours:
            # check our calls against them without reporting their own errors.
            text = "# mypy: ignore-errors\nimport typing\n" + text
            repaired, n = repair_stub(text)
            (out / f.name).write_text(repaired)
            fixed += n
    return fixed


def main(argv: list[str] | None = None) -> int:
    from mypy import api

    targets = list(argv if argv else TARGETS)
    stub_root = Path(".mypy_cache") / "sr-edge-trt-stubs"
    fixed = prepare_stubs(stub_root)
    env_path = os.environ.get("MYPYPATH")
    os.environ["MYPYPATH"] = os.pathsep.join(filter(None, [str(stub_root), env_path]))
    # Report only the targets (by default the whole package), not the modules they import.
    out, err, status = api.run(["--follow-imports=silent", *targets])
    print(out, end="")
    print(err, end="", file=sys.stderr)
    if status != 0:
        return status
    with tempfile.TemporaryDirectory() as tmp:
        canary = Path(tmp) / "trt_canary.py"
        canary.write_text(_CANARY)
        c_out, _, c_status = api.run(["--follow-imports=silent", "--no-incremental", str(canary)])
    caught = c_out.count("error:")
    if c_status == 0 or caught < 2:
        print(f"typecheck: the TensorRT stubs are not in force (canary errors caught: {caught}/2)\n{c_out}")
        return 1
    print(f"typecheck: TensorRT stubs in force ({fixed} unparsable stub signatures relaxed; canary rejected)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
