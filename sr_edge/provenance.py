"""Where an output came from, and writing it safely.

Every stage writes its files atomically (a temp file in the same folder, then a rename)
and records inputs, config, versions and the git commit, so a result can be traced and
re-run. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .paths import PROJECT_ROOT


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_info() -> dict[str, Any]:
    """Commit and dirty flag of the sr-edge checkout (empty when not in a git checkout)."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {}
        status = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {}


def library_versions(
    names: tuple[str, ...] = ("sr-edge", "numpy", "onnx", "onnxruntime", "openvino", "torch"),
) -> dict[str, str]:
    """Installed versions of the libraries that shape results (absent ones are skipped)."""
    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; platform fallback elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """The machine a result was measured on (as pytest-benchmark records it)."""
    return {
        "node": platform.node(),
        "system": platform.system(),
        "release": platform.release(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": platform.python_version(),
    }


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temp_beside(target: Path, folder: bool = False) -> Path:
    """A new temp file (or folder) in ``target``'s folder, for an atomic rename onto ``target``.

    A refusal (no such folder, no permission, a read-only file system) names ``target``,
    the path the user gave, not the hidden temp name.
    """
    prefix = f".{target.name}."
    try:
        if folder:
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=target.parent))
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(target)) from None
    os.close(fd)
    return Path(tmp)


def named_os_error(e: BaseException, target: Path, *temps: Path) -> OSError | None:
    """``e`` as an OSError that names ``target``, the path the user gave (None: not an OS failure).

    A failed write names no file (``write()`` knows only a descriptor) or the hidden temp
    file; and Rust-backed writers (safetensors) raise their own error around an OS error
    (``... No space left on device (os error 28)``). All three come out naming ``target``, so the CLI's
    boundary reports one line with the path and the cause (e.g. no space left).
    """
    if isinstance(e, OSError):
        named = e.filename is None or any(os.fspath(e.filename) == os.fspath(t) for t in temps)
        return OSError(e.errno, e.strerror, str(target)) if named and e.errno is not None else e
    m = re.search(r"\(os error (\d+)\)|\bOs \{ code: (\d+)", str(e))  # Rust io::Error, shown or debug-printed
    if m is not None:
        code = int(m.group(1) or m.group(2))
        return OSError(code, os.strerror(code), str(target))
    return None


@contextlib.contextmanager
def naming(target: str | os.PathLike[str], *temps: Path) -> Iterator[None]:
    """OS failures in the block name ``target`` (see :func:`named_os_error`)."""
    try:
        yield
    except Exception as e:
        named = named_os_error(e, Path(target), *temps)
        if named is None or named is e:
            raise
        raise named from e


def check_replaceable(target: str | os.PathLike[str]) -> None:
    """One-line refusal where ``target`` exists and is not a file: the rename that publishes an
    output would replace a device (``--out /dev/null``), a named pipe, a socket or a folder."""
    try:
        mode = os.lstat(target).st_mode
    except OSError:
        return  # absent (the usual case), or unreachable: the write itself will say why
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a link is replaced itself, never what it points to
        return
    from .errors import SrEdgeError

    kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a device, a pipe or a socket)"
    raise SrEdgeError(f"{target}: {kind}; an output is written as a new file there, choose another path")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it replaces ``path`` in one rename.

    On any exit before that (an error, Ctrl-C, SIGTERM raised as an exception) the temp
    file is removed, and the temps a killed earlier write of ``path`` left are swept first;
    an OS failure names ``path``, not the temp file.
    """
    target = Path(path)
    check_replaceable(target)
    with naming(target):
        target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(target)  # what an earlier write of it left when killed (kill -9, power loss)
    tmp = temp_beside(target)
    try:
        with naming(target, tmp):
            yield tmp
            # mkstemp creates 0600; give the file the permissions a plain open() would.
            os.chmod(tmp, 0o666 & ~current_umask())
            os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Temp files (or folders) an interrupted write of ``target`` left beside it: exactly the
    names :func:`temp_beside` gives (``.NAME.`` + tempfile's 8 random characters + ``.tmp``)."""
    t = Path(target)
    try:
        names = os.listdir(t.parent)
    except OSError:
        return []
    ours = re.compile(rf"\.{re.escape(t.name)}\.[a-z0-9_]{{8}}\.tmp")
    return [t.parent / n for n in sorted(names) if ours.fullmatch(n)]


def sweep_stale(target: str | os.PathLike[str]) -> list[Path]:
    """Remove what :func:`stale_temps` finds for ``target`` (a killed run's leftovers); what was removed."""
    removed = []
    for p in stale_temps(target):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except FileNotFoundError:
            continue  # another run removed it first
        removed.append(p)
    return removed


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Write JSON atomically (indented, trailing newline)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return Path(path)
