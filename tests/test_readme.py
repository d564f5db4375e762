"""The README cannot drift from the CLI: every ``sr-edge`` command it shows runs.

Every ``sr-edge ...`` line of the README's ```sh blocks (comments dropped, ``\\``
continuations joined, globs expanded) is parsed by the real parser, where an unknown verb or
option is an error, and then run in-process through :func:`sr_edge.cli.main`, in a fresh
folder outside the checkout that holds what the README assumes: a copy of ``export/`` and
``benchmarks/baselines/``, a small ``photo.png`` for any image it names, a results file for
any JSON it reads, and tiny datasets (``Set5``, ``Set14``, ``B100``, ``T91``, ``BSD200``)
found through ``$SR_EDGE_DATA``. Long verbs run short, on the README's own options:

- a verb that has ``--dry-run`` gets it (``bench``);
- ``train`` gets a few steps (``SHORTEN``: the last value of an option wins).

A new verb that takes long and has no ``--dry-run`` belongs in ``SHORTEN``. A command that
asks for a runtime this machine lacks (``--backend tensorrt`` here) must fail the way the
README promises: exit 2, one line naming the pip extra.

Commands elsewhere (inline ``sr-edge ...`` spans, ``docs/``, ``benchmarks/baselines/README.md``)
are parsed, not run. Every verb of the CLI must have an example in the README's Command line
section, and every built name of ``sr_edge.__all__`` must appear in the README (a stage whose
module is not written yet is left out until it is).
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import re
import shlex
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import sr_edge
from sr_edge.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
OTHER_DOCS = [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "benchmarks" / "baselines" / "README.md"]

# Extra arguments that make a long verb short; appended, so they override the README's values.
SHORTEN: dict[str, list[str]] = {
    "train": ["--steps", "2", "--batch-size", "4"],
    "prune": ["--steps", "1", "--batch-size", "2"],
    "quantize": ["--mode", "ptq", "--calib-images", "2"],
    # a folder base (the workspace's copy of export/) instead of a git ref, two short rounds
    "gate": ["--base", "export", "--bundles", "export", "--models", "espcn/x2", "--backend", "ort",
             "--resolution", "32x24", "--runs", "1", "--min-rounds", "3", "--max-rounds", "3", "--max-seconds", "5"],
}  # fmt: skip
# Options whose value is a file the command writes (never made up as an input).
OUTPUT_OPTIONS = {"--out", "-o", "--report"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DATASETS = ("Set5", "Set14", "B100", "T91", "BSD200")
# The module each backend's runtime comes from, and the pip extra that installs it.
RUNTIMES = {"openvino": ("openvino", "openvino"), "tensorrt": ("tensorrt", "tensorrt"), "torch": ("torch", "train")}
SH_FENCE = re.compile(r"^```(sh|bash|shell|console)\s*$")
INLINE = re.compile(r"`(sr-edge(?: [^`]*)?)`")


# --- reading the README ------------------------------------------------------------------


def sh_commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, argv) of every ``sr-edge`` command in the ```sh blocks of ``text``."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if not SH_FENCE.match(lines[i].strip()):
            i += 1
            continue
        i += 1
        pending, start = "", 0
        while i < len(lines) and not lines[i].strip().startswith("```"):
            line = lines[i]
            if not pending:
                start = i + 1
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
            else:
                argv = shlex.split(pending + line, comments=True)
                pending = ""
                if argv and argv[0] == "sr-edge":
                    yield start, argv
            i += 1
        i += 1


def inline_commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line number, argv) of every `sr-edge ...` code span outside the code blocks."""
    in_block = False
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            for m in INLINE.finditer(line):
                yield n, shlex.split(m.group(1))


def section(text: str, heading: str) -> str:
    """The body of the ``## heading`` section of ``text``."""
    m = re.search(rf"^## {re.escape(heading)}\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, f"README has no '## {heading}' section"
    return m.group(1)


def verbs() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def parse(argv: list[str], where: str) -> argparse.Namespace:
    """``argv`` through the real parser; an unknown verb, option or value fails the test."""
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"{where}: `{shlex.join(argv)}` does not parse (exit {e.code}); see the error above")


README_TEXT = README.read_text(encoding="utf-8")
README_COMMANDS = list(sh_commands(README_TEXT))


def test_readme_has_commands() -> None:
    assert len(README_COMMANDS) >= 12, README_COMMANDS
    assert list(sh_commands(section(README_TEXT, "Command line"))), "the Command line section shows no command"


def test_every_verb_has_an_example_in_the_command_line_section() -> None:
    shown = {argv[1] for _, argv in sh_commands(section(README_TEXT, "Command line")) if len(argv) > 1}
    missing = sorted(set(verbs()) - shown)
    assert not missing, f"README's Command line section has no example of: {', '.join(missing)}"


def test_python_api_in_readme_is_the_public_api() -> None:
    used = {n for n in re.findall(r"\bsr_edge\.([A-Za-z_]\w*)", README_TEXT) if not n.startswith("__")}
    unknown = sorted(used - set(sr_edge.__all__))
    assert not unknown, f"README uses names sr_edge does not export: {unknown}"
    undocumented = sorted(n for n in built_names() if f"`{n}`" not in README_TEXT)
    assert not undocumented, f"README's Python API does not list: {undocumented}"


def built_names() -> Iterator[str]:
    """The names of ``sr_edge.__all__`` that exist: a stage's name whose module is not written
    yet (``ModuleNotFoundError`` for an ``sr_edge`` module) is not built, so the README must
    not list it as if it were; it must once it is."""
    for name in sr_edge.__all__:
        if name.startswith("__"):
            continue
        try:
            getattr(sr_edge, name)
        except ModuleNotFoundError as e:
            if (e.name or "").startswith("sr_edge."):
                continue
            raise
        except sr_edge.MissingDependencyError:
            pass  # built, needs an extra this environment lacks
        yield name


def documented_commands() -> Iterator[tuple[str, list[str], bool]]:
    """(file:line, argv, whole) of the commands that are parsed but not run: inline spans
    (``whole`` False: prose names a verb and its options, not always a complete command),
    and docs' blocks (``whole`` True)."""
    for path in [README, *OTHER_DOCS]:
        text = path.read_text(encoding="utf-8")
        found = [(n, a, False) for n, a in inline_commands(text)]
        found += [] if path == README else [(n, a, True) for n, a in sh_commands(text)]
        for n, argv, whole in found:
            yield f"{path.relative_to(ROOT)}:{n}", argv, whole


DOCUMENTED = list(documented_commands())


def _placeholder(token: str) -> bool:
    """``...``, ``FILE...`` or ``<candidate tree>``: a stand-in, not a value."""
    return token.endswith("...") or ("<" in token and ">" in token)


@pytest.mark.parametrize("where, argv, whole", DOCUMENTED, ids=[f"{w} {' '.join(a[1:3])}" for w, a, _ in DOCUMENTED])
def test_documented_commands_parse(where: str, argv: list[str], whole: bool) -> None:
    if len(argv) == 1:
        return
    assert argv[1] in verbs(), f"{where}: unknown verb {argv[1]!r}"
    if whole and not any(_placeholder(t) for t in argv):
        parse(argv, where)
        return
    # A verb named in prose, or a command with stand-ins: its options must still exist.
    known = {s for action in verbs()[argv[1]]._actions for s in action.option_strings}
    unknown = [t.split("=", 1)[0] for t in argv[2:] if t.startswith("-") and t.split("=", 1)[0] not in known]
    assert not unknown, f"{where}: sr-edge {argv[1]} has no option {unknown[0]}"


# --- running the README's commands ---------------------------------------------------------


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny HR datasets under the names the README uses, so evaluation and training are quick."""
    from PIL import Image

    root = tmp_path_factory.mktemp("datasets")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:128, 0:128]
    for name in DATASETS:
        (root / name).mkdir()
        for i in range(4):
            base = (np.sin(x / (5 + i)) + np.cos(y / (7 + i))) * 60 + 128
            img = np.clip(base[..., None] + rng.normal(0, 8, (128, 128, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _inputs(argv: list[str]) -> Iterator[str]:
    """Tokens that name files the command reads (not option names, not outputs)."""
    for prev, tok in zip(["", *argv], argv, strict=False):
        if not tok.startswith("-") and prev not in OUTPUT_OPTIONS:
            yield tok


def _workspace(work: Path, argv: list[str]) -> None:
    """Put into ``work`` what the README assumes the reader has."""
    from PIL import Image

    if argv[1] != "export":  # `sr-edge export` writes export/<model>/x<s> itself
        shutil.copytree(ROOT / "export", work / "export")
    shutil.copytree(ROOT / "benchmarks" / "baselines", work / "benchmarks" / "baselines")
    for tok in _inputs(argv[2:]):
        path = work / tok
        if any(c in tok for c in "*?[") or path.exists():
            continue
        if tok.lower().endswith(IMAGE_SUFFIXES):
            path.parent.mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(1)
            Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(path)
        elif tok.endswith(".json"):
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / "benchmarks" / "baselines" / "ci-cpu.json", path)


def _expand(argv: list[str], work: Path) -> list[str]:
    """Shell globs, expanded in ``work`` as a shell would (kept as written when nothing matches)."""
    out: list[str] = []
    for tok in argv:
        hits = sorted(glob.glob(tok, root_dir=work)) if any(c in tok for c in "*?[") else []
        out.extend(hits or [tok])
    return out


def _missing_extra(ns: argparse.Namespace) -> str | None:
    """The pip extra a command needs that this machine lacks (its runtime does not import)."""
    asked = getattr(ns, "backend", None)
    for backend in [asked] if isinstance(asked, str) else []:
        module, extra = RUNTIMES.get(backend.lower(), (None, None))
        if module is None:
            continue
        spec = importlib.util.find_spec(module)
        # tensorrt-stubs leaves a namespace package named tensorrt (no origin): not a runtime
        if spec is None or spec.origin is None:
            return extra
    return None


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """torch on one thread while a command runs (restored after): its 2-thread kernels stall
    when other jobs share the 2 cores, and these commands' tensors are tiny."""
    if importlib.util.find_spec("torch") is None:
        yield
        return
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _checkout_entries() -> set[str]:
    return {p.name for p in ROOT.iterdir()} | {
        str(p.relative_to(ROOT)) for d in ("export", "benchmarks") for p in (ROOT / d).rglob("*")
    }


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("line, argv", README_COMMANDS, ids=[f"L{n} {' '.join(a[1:3])}" for n, a in README_COMMANDS])
def test_readme_command_runs(
    line: int,
    argv: list[str],
    data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = f"README.md:{line}"
    ns = parse(argv, where)
    work = tmp_path / "work"
    work.mkdir()
    _workspace(work, argv)
    monkeypatch.chdir(work)
    monkeypatch.setenv("SR_EDGE_DATA", str(data_root))
    run = _expand(argv[1:], work)
    if "--dry-run" in {s for a in verbs()[argv[1]]._actions for s in a.option_strings} and "--dry-run" not in run:
        run.append("--dry-run")
    run += SHORTEN.get(argv[1], [])
    before = _checkout_entries()

    rc = main(run)

    out, err = capsys.readouterr()
    extra = _missing_extra(ns)
    if extra is not None:
        assert rc == 2, f"{where}: expected the missing-runtime error, got exit {rc}\n{err}"
        assert f"sr-edge[{extra}]" in err and len(err.strip().splitlines()) == 1, err
    else:
        # the gate's exit 1 is a verdict (two short, loaded rounds of the same bundle may disagree)
        ok = (0, 1) if argv[1] == "gate" else (0,)
        assert rc in ok, f"{where}: `sr-edge {shlex.join(run)}` exited {rc}\n{out[-2000:]}\n{err[-2000:]}"
    # what this command could have written there (others may add unrelated files meanwhile)
    named = {Path(t).parts[0] for t in run if not t.startswith("-") and Path(t).parts}
    leaked = [e for e in sorted(_checkout_entries() - before) if e.split("/")[0] in named | {"export", "benchmarks"}]
    leaked += [e for e in sorted(_checkout_entries() - before) if e.startswith("results")]
    assert not leaked, f"{where}: wrote into the checkout: {leaked}"


def test_the_readme_recipe_is_the_default_recipe() -> None:
    """The README documents the recipe format with the embedded default as its example."""
    import tomllib

    from sr_edge.recipe import load_recipe, recipe_from_dict

    m = re.search(r"^```toml\n(.*?)^```", README_TEXT, re.M | re.S)
    assert m, "README has no toml block"
    shown = recipe_from_dict(tomllib.loads(m.group(1)), "README")
    assert shown.to_json() == load_recipe().to_json()
