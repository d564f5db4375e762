"""The two sides of a gate: the candidate (the working tree) and the base (a git ref or a folder).

A base given as a git ref is checked out with ``git worktree add --detach`` into a temporary
folder (removed afterwards): its bundles are the same relative folder as the candidate's
(``export/`` by default), and when that checkout holds the sr-edge package itself (the
sr-edge repository), the base's bundles run under the base's own code (its checkout first
on the worker's ``sys.path``); in any other repository both sides run the installed sr-edge.
A base given as a folder of bundles runs under the candidate's code.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..bundle import find_bundles
from ..errors import SrEdgeError, one_line
from ..paths import PACKAGE_DIR


@dataclass(frozen=True)
class Side:
    """Where one side's bundles are and which sr-edge code runs them."""

    label: str  # "base" or "candidate"
    bundles: Path
    code: Path  # folder put first on the worker's sys.path (holds the sr_edge package to use)
    kind: str  # "working tree", "git ref", "folder"
    ref: str | None = None
    commit: str | None = None

    def describe(self) -> str:
        """One line for people."""
        what = {"git ref": f"git ref {self.ref} ({(self.commit or '?')[:12]})", "folder": f"folder {self.bundles}"}
        head = what.get(self.kind, f"working tree{f' ({self.commit[:12]})' if self.commit else ''}")
        return f"{head}: bundles {self.bundles}, sr-edge code {self.code / 'sr_edge'}"

    def to_json(self) -> dict[str, str | None]:
        """Plain JSON."""
        return {
            "kind": self.kind,
            "ref": self.ref,
            "commit": self.commit,
            "bundles": str(self.bundles),
            "code": str(self.code / "sr_edge"),
        }


INSTALLED_CODE = PACKAGE_DIR.parent  # the folder holding the sr_edge package this process runs


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise SrEdgeError("git is not installed; pass a folder of bundles as --base instead of a ref") from None


def repo_root(start: Path) -> Path | None:
    """The top of the git work tree holding ``start`` (None: not in one)."""
    done = _git(start, "rev-parse", "--show-toplevel")
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def candidate_side(bundles: Path, repo: Path | None) -> Side:
    """The working tree's bundles, run by this process's sr-edge code."""
    commit = None
    if repo is not None:
        done = _git(repo, "rev-parse", "HEAD")
        commit = done.stdout.strip() if done.returncode == 0 else None
    return Side("candidate", bundles, INSTALLED_CODE, "working tree", commit=commit)


def _has_bundles(folder: Path) -> bool:
    return bool(find_bundles(folder))


@contextlib.contextmanager
def base_side(base: str, candidate_bundles: Path, repo: Path | None, base_code: str = "base") -> Iterator[Side]:
    """The base as a :class:`Side`; a git ref is checked out for the duration of the ``with`` block.

    ``base_code``: ``"base"`` runs a ref's bundles under the ref's own sr-edge code when its
    checkout has one; ``"candidate"`` runs them under this process's code.
    """
    folder = Path(base)
    if folder.is_dir():
        if (folder / "manifest.json").is_file():
            raise SrEdgeError(
                f"--base {base} is a single bundle; pass the folder of bundles above it "
                f"(laid out like {candidate_bundles})"
            )
        if not _has_bundles(folder):
            raise SrEdgeError(f"--base {base}: the folder holds no bundles (no */manifest.json under it)")
        yield Side("base", folder.resolve(), INSTALLED_CODE, "folder")
        return
    if repo is None:
        raise SrEdgeError(f"--base {base!r} is neither a folder of bundles nor a git ref (not inside a git repository)")
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    if done.returncode != 0 or not done.stdout.strip():
        raise SrEdgeError(
            f"base ref {base!r} does not exist in {repo} "
            f"(in a shallow CI clone fetch it first: git fetch origin {base})"
        )
    commit = done.stdout.strip()
    try:
        rel = candidate_bundles.resolve().relative_to(repo.resolve())
    except ValueError:
        raise SrEdgeError(
            f"the candidate bundles {candidate_bundles} are outside the repository {repo}; "
            "a git-ref base needs them inside it (or pass a folder of bundles as --base)"
        ) from None
    tmp = Path(tempfile.mkdtemp(prefix="sr-edge-gate-"))
    tree = tmp / "base"
    try:
        added = _git(repo, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        if added.returncode != 0:
            raise SrEdgeError(f"git worktree add for base {base!r} failed: {one_line(added.stderr)[:300]}")
        bundles = tree / rel
        if not bundles.is_dir() or not _has_bundles(bundles):
            raise SrEdgeError(
                f"base {base} ({commit[:12]}) has no bundles under {rel.as_posix()}/; nothing to compare against"
            )
        own_code = (tree / "sr_edge" / "backends" / "__init__.py").is_file()
        code = tree if own_code and base_code == "base" else INSTALLED_CODE
        yield Side("base", bundles, code, "git ref", ref=base, commit=commit)
    finally:
        _git(repo, "worktree", "remove", "--force", str(tree))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(repo, "worktree", "prune")
