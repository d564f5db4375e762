"""The built wheel works outside the checkout, on a core + ``openvino`` install with no torch.

The test builds the wheel from a copy of the checkout (so the checkout gains no build/ or
egg-info), installs it into a fresh virtual environment, and gives that environment exactly
the distributions that ``sr-edge`` (core) and its ``openvino`` extra require, by linking
them from the test's own environment: no network, and no torch (nor anything else outside
that requirement closure) to import. Then, from a folder outside the checkout, it runs what
a deployment user runs: ``devices``, ``models``, ``upscale`` of a shipped model, ``eval`` on
the embedded samples and ``bench --quick --no-peers``.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("openvino",)

pytestmark = pytest.mark.slow


def _checkout_files() -> list[str]:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"not a git checkout ({done.stderr.strip()}); the wheel test copies the checkout's files")
    return [f for f in done.stdout.split("\0") if f and (ROOT / f).is_file()]


def _requirement_closure(roots: list[Requirement], extras: tuple[str, ...]) -> list[md.Distribution]:
    """The installed distributions ``roots`` need (with ``extras`` for the roots), transitively."""
    seen: dict[str, md.Distribution] = {}
    todo = [(r, extras) for r in roots]
    while todo:
        req, with_extras = todo.pop()
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in ("", *with_extras)):
            continue
        key = req.name.lower().replace("_", "-")
        if key in seen:
            continue
        dist = md.distribution(req.name)  # PackageNotFoundError: the test env lacks a core dependency
        seen[key] = dist
        todo += [(Requirement(r), tuple(req.extras)) for r in dist.requires or []]
    return list(seen.values())


def _link_distributions(dists: list[md.Distribution], into: Path) -> None:
    """Symlink each distribution's top-level files and folders (and its .dist-info) into ``into``."""
    into.mkdir()
    for dist in dists:
        base = Path(str(dist.locate_file("")))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            src, dst = base / top, into / top
            if src.exists() and not dst.exists() and top != "__pycache__":
                dst.symlink_to(src)


@pytest.fixture(scope="module")
def core_env(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for rel in _checkout_files():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, src / rel)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("sr_edge-*.whl")

    env = tmp / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    installed = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]

    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    own = next(purelib.glob("sr_edge-*.dist-info"))
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in (own / "METADATA").read_text().splitlines()
                if line.startswith("Requires-Dist:")]  # fmt: skip
    _link_distributions(_requirement_closure(requires, EXTRAS), tmp / "deps")
    (purelib / "zz_sr_edge_test_deps.pth").write_text(f"{tmp / 'deps'}\n")
    assert sysconfig.get_paths()["purelib"] != str(purelib)
    return env


def _run(env: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "SR_EDGE", "VIRTUAL_ENV"))}
    clean["PATH"] = f"{env / 'bin'}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run([str(env / "bin" / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, env=clean)


def test_the_core_install_has_no_torch_and_is_not_the_checkout(core_env: Path, tmp_path: Path) -> None:
    done = _run(
        core_env,
        "python",
        "-c",
        "import importlib.util, json, sr_edge; "
        "print(json.dumps([sr_edge.__file__, importlib.util.find_spec('torch') is None, "
        "importlib.util.find_spec('openvino') is not None]))",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    where, no_torch, has_openvino = json.loads(done.stdout)
    assert not Path(where).is_relative_to(ROOT) and no_torch and has_openvino
    # every committed bundle is in the wheel with each file its manifest lists (int8: one per runtime)
    listing = _run(
        core_env,
        "python",
        "-c",
        "import json; from sr_edge.paths import bundles_dir; r = bundles_dir(); "
        "print(json.dumps(sorted(str(p.relative_to(r)) for p in r.rglob('*') if p.is_file())))",
        cwd=tmp_path,
    )
    assert listing.returncode == 0, listing.stderr
    want = sorted(
        str(f.relative_to(ROOT / "export"))
        for m in (ROOT / "export").glob("*/x*/manifest.json")
        for f in [m, *(m.parent / n for n in json.loads(m.read_text())["files"])]
    )
    assert json.loads(listing.stdout) == want


def test_deployment_verbs_run_from_the_wheel(core_env: Path, tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "photo.png")

    devices = _run(core_env, "sr-edge", "devices", cwd=tmp_path)
    assert devices.returncode == 0 and "jetson-orin-nano" in devices.stdout and "ci-cpu" in devices.stdout, devices

    models = _run(core_env, "sr-edge", "models", "--json", cwd=tmp_path)
    assert models.returncode == 0, models.stderr
    shipped = {(m["model"], m["scale"]) for m in json.loads(models.stdout)}
    assert {("espcn", 3), ("fsrcnn", 2), ("ecbsr-m4c16", 4)} <= shipped

    up = _run(core_env, "sr-edge", "upscale", "espcn", "photo.png", "-s", "3", "--out", "x.png", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    with Image.open(tmp_path / "x.png") as img:
        assert img.size == (168, 120) and img.mode == "RGB"

    ev = _run(core_env, "sr-edge", "eval", "espcn", "-s", "3", "--json", cwd=tmp_path)
    assert ev.returncode == 0, ev.stderr
    result = json.loads(ev.stdout)
    assert result["dataset"] == "samples" and len(result["images"]) == 5 and 20 < result["psnr_y"] < 50

    bench = _run(
        core_env,
        *("sr-edge", "bench", "--quick", "--no-peers", "--scale", "2", "--out", "bench.json"),
        *("--models", "espcn/x2", "espcn/x2-int8", "--resolution", "320x180"),  # a float and an int8 bundle
        cwd=tmp_path,
    )
    assert bench.returncode == 0, bench.stderr[-2000:]
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    ok = [r for r in rows if r.get("status") == "ok"]
    assert ok and {r["backend"] for r in ok} >= {"ort", "openvino"}, [(r.get("id"), r.get("status")) for r in rows]
    assert {r["precision"] for r in ok} >= {"fp32", "int8"}, [(r.get("id"), r.get("status")) for r in rows]
