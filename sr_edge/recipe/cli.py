"""The ``sr-edge run`` verb: the main job on a recipe (the embedded default when none is given)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

DEFAULT_OUT = "results/run"


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import describe_shipped, dry_run, run_recipe, summary_json
    from .schema import load_recipe

    recipe = load_recipe(args.recipe)  # the whole recipe is checked before anything else
    if args.dry_run:
        for slug, title, cached in dry_run(recipe, args.out):
            print(f"{'cached ' if cached else 'to run '} {slug}: {title}")
        print(f"shipped bundles measured: {', '.join(describe_shipped(recipe))}")
        return 0
    result = run_recipe(recipe, args.out, force=args.force)
    if args.json:
        print(json.dumps(summary_json(result), indent=2))
    else:
        ran = sum(not s.cached for s in result.stages)
        print(f"sr-edge run: {ran} of {len(result.stages)} stages ran, {result.seconds:.1f} s", file=sys.stderr)
        print(result.index)
    return 0


def add_commands(sub: Any) -> None:
    """Register ``run`` on the ``sr-edge`` subparsers."""
    p = sub.add_parser(
        "run",
        help="the main job: compress, export, benchmark, report and recommend per device (a recipe, or the default)",
    )
    p.add_argument("recipe", nargs="?", help="recipe .toml (default: the embedded one; see the README)")
    p.add_argument("--out", "-o", default=DEFAULT_OUT, help=f"run folder (default {DEFAULT_OUT})")
    p.add_argument("--dry-run", action="store_true", help="print the stages and which are cached; do nothing")
    p.add_argument("--force", action="store_true", help="re-run every stage even where its cache is valid")
    p.add_argument("--json", action="store_true", help="print the run's summary as JSON")
    p.set_defaults(func=cmd_run)
