"""Fuzzing (Hypothesis): the image loader and the CLI's options.

Property of the loader (:func:`sr_edge.data.io.read_image`) over random bytes, valid
files of every format it reads cut short or with bytes changed, and random headers after
a real signature: an H x W x C uint8/uint16 array, or an :class:`SrEdgeError` on one line
naming the file. Nothing else (no decoder's own exception, no crash, no hang).

Property of the CLI (:func:`sr_edge.cli.main` in this process) over random values for the
typed options of each verb that answers in well under a second (upscale, eval, report,
compare, select, bench --dry-run, check-trt, devices, backends): exit 0 (or a verb's own
verdict code), or exit 2 with one error line; never a traceback; and no file that existed
before the command is changed (``--overwrite`` is never drawn). Verbs that train, export,
measure or compress for minutes when their input is valid are left out.

The default run is sized for ``make test`` on two busy cores (under a minute, examples
derived from a fixed seed so a run is repeatable); ``SR_EDGE_FUZZ_SCALE=10`` multiplies
every example count and draws new random examples (``SR_EDGE_FUZZ_SCALE=10 pytest
tests/test_fuzz.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import shutil
import struct
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sr_edge.data.io import read_image, write_image  # noqa: E402
from sr_edge.errors import SrEdgeError  # noqa: E402
from sr_edge.paths import bundles_dir  # noqa: E402

SCALE = max(1, int(os.environ.get("SR_EDGE_FUZZ_SCALE", "1")))


def fuzz(examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings of this suite: ``examples`` (times SR_EDGE_FUZZ_SCALE), no deadline
    (the machine is shared and loaded), no example database in the checkout."""
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        database=None,
        derandomize=SCALE == 1,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- the loader ----------------------------------------------------------------------------------


def _seed_files(folder: Path) -> dict[str, bytes]:
    """One small valid file per kind the loader reads, as bytes."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    made: dict[str, Path] = {
        "png8.png": write_image(folder / "png8.png", rgb),
        "png16.png": write_image(folder / "png16.png", rng.integers(0, 65536, (7, 5, 4), dtype=np.uint16)),
        "grey.png": write_image(folder / "grey.png", rgb[..., :1]),
        "jpeg.jpg": write_image(folder / "jpeg.jpg", rgb),
        "bmp.bmp": write_image(folder / "bmp.bmp", rgb),
        "tif8.tif": write_image(folder / "tif8.tif", rgb),
        "tif16.tif": write_image(folder / "tif16.tif", rng.integers(0, 65536, (6, 4, 3), dtype=np.uint16)),
        "tif16ga.tif": write_image(folder / "tif16ga.tif", rng.integers(0, 65536, (6, 4, 2), dtype=np.uint16)),
    }
    Image.fromarray(rgb).convert("P").save(folder / "palette.png")
    Image.fromarray(rgb).save(folder / "progressive.jpg", progressive=True, quality=80)
    made["palette.png"], made["progressive.jpg"] = folder / "palette.png", folder / "progressive.jpg"
    return {name: p.read_bytes() for name, p in made.items()}


_SEEDS: dict[str, bytes] = {}  # module-wide, not a test argument: Hypothesis would print it whole


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> None:
    _SEEDS.update(_seed_files(tmp_path_factory.mktemp("seeds")))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader")


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}")


def _check_read(path: Path) -> None:
    """The loader's property on one file: an image or one line, and nothing said besides
    (no warning, no log record: each would be more lines on the user's stderr)."""
    said = _Said()
    logging.getLogger().addHandler(said)
    try:
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                img = read_image(path)
            except SrEdgeError as e:
                text = str(e)
                assert "\n" not in text and str(path) in text, text
                return
            finally:
                assert not warned and not said.records, ([str(w.message) for w in warned], said.records)
    finally:
        logging.getLogger().removeHandler(said)
    assert isinstance(img, np.ndarray) and img.ndim == 3, getattr(img, "shape", img)
    assert img.dtype in (np.uint8, np.uint16) and img.shape[2] in (1, 2, 3, 4), (img.shape, img.dtype)
    assert img.shape[0] >= 1 and img.shape[1] >= 1, img.shape


_counter = iter(range(10**9))


def _write(scratch: Path, name: str, data: bytes) -> Path:
    # a new name each time: a file kept open by a failed decoder never stands in for the next
    path = scratch / f"{next(_counter)}_{name}"
    path.write_bytes(data)
    return path


SUFFIXES = st.sampled_from([".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ""])


@fuzz(120)
@given(data=st.binary(min_size=1, max_size=2048), suffix=SUFFIXES)
def test_loader_on_random_bytes(scratch: Path, data: bytes, suffix: str) -> None:
    _check_read(_write(scratch, f"random{suffix}", data))


@fuzz(150)
@given(data=st.data())
@pytest.mark.usefixtures("seeds")
def test_loader_on_truncated_valid_files(scratch: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_SEEDS)))
    whole = _SEEDS[name]
    cut = data.draw(st.integers(0, len(whole) - 1))
    _check_read(_write(scratch, name, whole[:cut] if cut else whole[:1]))


@fuzz(200)
@given(data=st.data())
@pytest.mark.usefixtures("seeds")
def test_loader_on_mutated_valid_files(scratch: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(_SEEDS)))
    buf = bytearray(_SEEDS[name])
    for _ in range(data.draw(st.integers(1, 8))):
        op = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]))
        at = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "set":
            buf[at] = data.draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80]))
        elif op == "insert":
            buf[at:at] = data.draw(st.binary(min_size=1, max_size=64))
        elif len(buf) > 2:
            del buf[at : at + data.draw(st.integers(1, 64))]
    _check_read(_write(scratch, name, bytes(buf)))


def _png_chunk(kind: bytes, body: bytes, good_crc: bool) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF if good_crc else 0
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


@fuzz(150)
@given(data=st.data())
def test_loader_on_random_headers(scratch: Path, data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["png", "jpeg", "tiff-le", "tiff-be", "bmp"]))
    rest = data.draw(st.binary(max_size=512))
    dim = st.sampled_from([0, 1, 2, 3, 255, 4096, 65535, 2**31 - 1, 2**32 - 1]) | st.integers(0, 2**32 - 1)
    if kind == "png":
        w, h = data.draw(dim), data.draw(dim)
        depth = data.draw(st.sampled_from([0, 1, 2, 4, 8, 16, 32]))
        colour = data.draw(st.sampled_from([0, 2, 3, 4, 6, 7]))
        good = data.draw(st.booleans())
        ihdr = struct.pack(">IIBBBBB", w, h, depth, colour, 0, 0, data.draw(st.sampled_from([0, 1, 2])))
        idat = _png_chunk(b"IDAT", zlib.compress(rest) if data.draw(st.booleans()) else rest, good)
        blob = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr, good) + idat + _png_chunk(b"IEND", b"", good)
        name = "header.png"
    elif kind == "jpeg":
        blob, name = b"\xff\xd8\xff" + rest, "header.jpg"
    elif kind.startswith("tiff"):
        magic = b"II*\x00" if kind == "tiff-le" else b"MM\x00*"
        fmt = "<I" if kind == "tiff-le" else ">I"
        blob, name = magic + struct.pack(fmt, data.draw(st.integers(0, 600))) + rest, "header.tif"
    else:
        w, h = data.draw(st.integers(-(2**31), 2**31 - 1)), data.draw(st.integers(-(2**31), 2**31 - 1))
        bpp = data.draw(st.sampled_from([0, 1, 4, 8, 16, 24, 32, 64]))
        info = struct.pack("<IiiHHI", 40, w, h, 1, bpp, data.draw(st.integers(0, 6))) + rest
        blob, name = b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 54) + info, "header.bmp"
    _check_read(_write(scratch, name, blob))


# --- the CLI's options ---------------------------------------------------------------------------

TRICKY = [
    "0", "1", "2", "3", "4", "8", "-1", "1e9", "99999999999999999999", "0.5", "-0.0", "nan", "inf", "-inf",
    "-", ".", "..", "auto", "none", "cpu", "cuda", "cuda:abc", "cuda:0", "gpu", "npu", "a=b", "x",
    "32x24", "0x0", "1x1", "8x8", "1x8x8", "99999x99999", "WxH", "ci-cpu", "intel-laptop-cpu", "Set5", "samples",
    "ort", "openvino", "torch", "tensorrt", "fp32", "fp16", "bf16", "int8", "jpeg:75", "noise:5", "blur:-1",
    "jpeg:75+noise:5", "ß", "caf\udce9", "x" * 300, "in.png", "data", "missing.png", "results.json", "other.json",
    "bundle", "out/new.png", "newdir", "in.png/x", "data/0.png", "steady", "frame",
]  # fmt: skip
WORDS = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1, max_size=12)
NEVER = {"--overwrite", "--verify", "--help", "-h", "--version", "--check-estimate", "--resume", "--report"}
# Values each option (by its dest) takes in ordinary use, so that a good share of the commands
# are valid and run to a result; the rest of the draws are wild.
PLAUSIBLE: dict[str, list[str]] = {
    "out": ["out/new.png", "out/new.tif", "out/new.jpg", "newdir", "out", "rep2", "out/keep.png"],
    "scale": ["2", "3", "4"], "tile": ["0", "8", "16", "auto"], "backend": ["ort", "openvino", "torch", "auto"],
    "precision": ["fp32", "int8", "bf16"], "device": ["cpu", "ci-cpu", "auto"], "profile": ["ci-cpu"],
    "results": ["results.json", "other.json"], "calibration": ["results.json"], "crf": ["18", "0", "51"],
    "dataset": ["data", "samples", "Set5"], "data_root": ["."], "degrade": ["jpeg:75", "noise:5", "none", "blur:1"],
    "resolution": ["32x24", "64x48", "16x16"], "models": ["espcn/x2", "espcn", "bundle"], "bundles": ["."],
    "threads": ["1", "2"], "warmup": ["0", "1"], "min_runs": ["1", "3"], "min_time": ["0", "0.01"],
    "max_time": ["1", "5"], "rounds": ["1", "2"], "budget_ms": ["50", "1000"], "min_psnr": ["30"],
    "memory_mb": ["512"], "tolerance": ["0.1"], "psnr_tolerance": ["0.05"], "min": ["1x8x8"],
    "opt": ["1x32x32"], "max": ["1x64x64", "1x1088x1920"], "compare": ["other.json"], "codec": ["libx264"],
}  # fmt: skip


def _value(action: argparse.Action) -> st.SearchStrategy[str]:
    """Random text for one value of ``action``: three times in four what it takes in ordinary
    use (its choices, PLAUSIBLE, a small number of its type), else anything."""
    wild: st.SearchStrategy[str] = st.sampled_from(TRICKY) | WORDS
    kind = action.type
    if kind is int:
        wild = st.integers(-(10**6), 10**6).map(str) | wild
    elif kind is float:
        wild = st.floats(allow_nan=True, allow_infinity=True).map(repr) | wild
    if action.choices is not None:
        usual: st.SearchStrategy[str] = st.sampled_from([str(c) for c in action.choices])
    elif action.dest in PLAUSIBLE:
        usual = st.sampled_from(PLAUSIBLE[action.dest])
    elif kind is int:
        usual = st.integers(0, 8).map(str)
    elif kind is float:
        usual = st.floats(0, 100).map(lambda v: f"{v:g}")
    else:
        usual = wild
    return st.integers(0, 3).flatmap(lambda k: usual if k else wild)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not set(a.option_strings) & NEVER]


@st.composite
def _command(draw: st.DrawFn, verb: str, base: list[str]) -> list[str]:
    """``base`` plus 1-3 of the verb's options, each with random values."""
    from sr_edge.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[verb]
    options = _options(sub)
    some = st.lists(st.sampled_from(options), min_size=1, max_size=3, unique_by=lambda a: a.dest)
    chosen = draw(some) if options else []
    args = list(base)
    for action in chosen:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            args.append(flag)
            continue
        count = {"?": draw(st.integers(0, 1)), "+": draw(st.integers(1, 2))}.get(str(action.nargs), 1)
        args += [flag, *(draw(_value(action)) for _ in range(count))]
    return args


def _snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def _run(argv: list[str]) -> tuple[int, str, str]:
    from sr_edge.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # a usage error
            code = int(e.code) if isinstance(e.code, int) else 2
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the commands read (an image, a dataset folder, results files, a bundle) and
    the folder they run in: every relative path a command is given lands in here."""
    from tests.test_report import ROWS, results_file

    root = tmp_path_factory.mktemp("cli")
    write_image(root / "in.png", np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8))
    (root / "data").mkdir()
    for i in range(2):
        write_image(root / "data" / f"{i}.png", np.random.default_rng(i).integers(0, 256, (16, 16, 3), np.uint8))
    results_file(root, ROWS)
    shutil.copy(root / "r.json", root / "results.json")
    shutil.copy(root / "r.json", root / "other.json")
    shutil.copytree(bundles_dir() / "espcn" / "x2", root / "bundle")
    (root / "out").mkdir()
    (root / "out" / "keep.png").write_bytes((root / "in.png").read_bytes())  # a user's file where outputs go
    return root


# verb -> (commands that start it, verdict exit codes besides 0 and 2)
VERBS: dict[str, tuple[list[list[str]], set[int]]] = {
    "upscale": ([["upscale", "bicubic", "in.png", "--out", "out/up.png"],
                 ["upscale", "bundle", "in.png", "--out", "out"], ["upscale", "bicubic", "data", "--out", "out/data"]],
                {1}),
    "eval": ([["eval", "bicubic", "-d", "data"], ["eval", "bundle", "-d", "data"]], set()),
    "report": ([["report", "results.json", "--out", "rep"], ["report", "results.json", "other.json"]], set()),
    "compare": ([["compare", "results.json", "other.json"]], {1}),
    "select": ([["select", "--results", "results.json"], ["select", "--device", "ci-cpu", "--estimate"]], {1}),
    "bench": ([["bench", "--dry-run", "--device", "ci-cpu"]], set()),
    "check-trt": ([["check-trt", "bundle"]], {1}),
    "devices": ([["devices"]], set()),
    "backends": ([["backends"]], set()),
}  # fmt: skip
EXAMPLES = {"upscale": 20, "eval": 8, "report": 6, "compare": 10, "select": 8, "bench": 15, "check-trt": 8,
            "devices": 8, "backends": 3}  # fmt: skip


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_cli_options_give_a_result_or_one_line(sandbox: Path, verb: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(sandbox)
    bases, verdicts = VERBS[verb]
    seen: dict[int, int] = {}

    @fuzz(EXAMPLES[verb])
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        argv = data.draw(_command(verb, data.draw(st.sampled_from(bases))))
        before = _snapshot(sandbox)
        code, _, err = _run(argv)
        seen[code] = seen.get(code, 0) + 1
        assert "Traceback" not in err and "bug in sr-edge" not in err, (argv, err)
        assert code in {0, 2} | verdicts, (argv, code, err)
        if code == 2:
            lines = [line for line in err.strip().splitlines() if "error:" in line]
            assert len(lines) == 1 and err.strip().splitlines()[-1] == lines[0], (argv, err)
        after = _snapshot(sandbox)
        changed = [str(p.relative_to(sandbox)) for p, b in before.items() if after.get(p) != b]
        assert not changed, (argv, changed, err)

    check()
    assert seen, "no example ran"
    print(f"{verb}: exit codes {dict(sorted(seen.items()))}")  # shown with pytest -s
