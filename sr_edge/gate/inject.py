"""An artificial slowdown, for measuring the gate's power: ``python -m sr_edge.gate.inject``.

``inject(src, dst, convs=n, point=p)`` copies a bundle and inserts ``n`` identity 1x1
convolutions (C -> C, weight = the identity matrix, no bias) on one of its inner feature
maps (``point``: the maps feeding a Conv or DepthToSpace, narrowest first), so each added
convolution costs C^2 MACs per LR pixel plus one read and one write of that map: a narrow
map gives a small step, a wide one a large step. The output is unchanged (x * 1 + 0 * others
is exact in float32), so only the time moves.

``calibrate(src)`` measures every point with 1..3 convolutions against the original on this
machine, interleaved; ``closest(measured, target)`` picks the copy nearest a slowdown. The
copy's manifest records what was injected (``gate_injection``).

::

    python -m sr_edge.gate.inject export/espcn/x2 /tmp/slow/espcn/x2 --target 0.15 --backend ort
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import MANIFEST, MODEL_FILE, read_bundle
from ..errors import SrEdgeError, one_line
from ..provenance import atomic_path, sha256_file, write_json


def insertion_points(model: Any) -> list[tuple[int, str, int]]:
    """(node index, input tensor, channels) for every Conv or DepthToSpace fed by an inner feature map.

    Sorted by channels: a narrow map makes a small step, a wide one a large step.
    """
    import onnx

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    dims = probe.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims, (1, dims[1].dim_value or 1, 32, 32), strict=True):
        d.Clear()
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(probe)
    channels = {}
    for vi in inferred.graph.value_info:
        shape = vi.type.tensor_type.shape.dim
        if len(shape) == 4 and shape[1].HasField("dim_value"):
            channels[vi.name] = int(shape[1].dim_value)
    graph_inputs = {i.name for i in model.graph.input}
    points = [
        (idx, node.input[0], channels[node.input[0]])
        for idx, node in enumerate(model.graph.node)
        if node.op_type in ("Conv", "DepthToSpace") and node.input[0] not in graph_inputs and node.input[0] in channels
    ]
    if not points:
        raise SrEdgeError("no inner feature map to insert convolutions on")
    return sorted(points, key=lambda p: (p[2], p[0]))


def inject(src: str | Path, dst: str | Path, convs: int, point: int | None = None) -> Path:
    """A copy of bundle ``src`` at ``dst`` with ``convs`` identity 1x1 convolutions inserted (see the module).

    ``point``: which of :func:`insertion_points` (narrowest first) to insert at; default the
    narrowest feature map of at least 8 channels (else the widest there is).
    """
    import onnx
    from onnx import helper, numpy_helper

    if isinstance(convs, bool) or not isinstance(convs, int) or convs < 1:
        raise SrEdgeError(f"convs must be a positive integer, got {convs!r}")
    bundle = read_bundle(src)
    out = Path(dst)
    if out.exists():
        raise SrEdgeError(f"{out} already exists; choose another destination")
    model = onnx.load(str(bundle.onnx_path))
    points = insertion_points(model)
    if point is None:
        point = next((i for i, p in enumerate(points) if p[2] >= 8), len(points) - 1)
    if isinstance(point, bool) or not isinstance(point, int) or not 0 <= point < len(points):
        raise SrEdgeError(f"point must be 0..{len(points) - 1} for {bundle.path}, got {point!r}")
    idx, tensor, channels = points[point]
    eye = numpy_helper.from_array(np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1), "gate_eye")
    model.graph.initializer.append(eye)
    prev = tensor
    new_nodes = []
    for i in range(convs):
        name = f"gate_identity_{i}"
        new_nodes.append(helper.make_node("Conv", [prev, "gate_eye"], [name], name=name, kernel_shape=[1, 1]))
        prev = name
    target = model.graph.node[idx]
    target.input[0] = prev
    for offset, node in enumerate(new_nodes):
        model.graph.node.insert(idx + offset, node)
    onnx.checker.check_model(model)
    out.mkdir(parents=True)
    with atomic_path(out / MODEL_FILE) as tmp:
        onnx.save(model, str(tmp))
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    graph_file = out / MODEL_FILE
    manifest["files"] = {MODEL_FILE: {"sha256": sha256_file(graph_file), "bytes": graph_file.stat().st_size}}
    manifest.pop("graph_sha256", None)  # another graph now; the file's sha256 above identifies it
    manifest["gate_injection"] = {
        "identity_convs": convs,
        "point": point,
        "channels": channels,
        "before": target.name or target.output[0],
        "source": str(bundle.path.resolve()),
        "source_sha256": bundle.onnx_sha256,
        "purpose": "an artificial slowdown for measuring sr-edge gate's power; output unchanged",
    }
    write_json(out / MANIFEST, manifest)
    return out


def _time_pair(paths: Sequence[Path], backend: str, shape: tuple[int, int, int, int], rounds: int, runs: int,
               threads: int | None) -> list[float]:  # fmt: skip
    """Per-path median over rounds of (p50 of ``runs`` / the first path's p50 in the same round)."""
    from ..backends import load_bundle
    from ..backends.timing import time_session

    opts: dict[str, Any] = {"threads": threads} if threads else {}
    sessions = [load_bundle(p, backend, **opts) for p in paths]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    try:
        for s in sessions:
            s.run(x)
        ratios: list[list[float]] = [[] for _ in paths]
        for r in range(rounds):
            order = list(range(len(paths))) if r % 2 == 0 else list(reversed(range(len(paths))))
            p50 = {i: statistics.median(time_session(sessions[i], x, runs, warmup=0)) for i in order}
            for i in range(len(paths)):
                ratios[i].append(p50[i] / p50[0])
        return [statistics.median(r) for r in ratios]
    finally:
        for s in sessions:
            s.close()


def calibrate(
    src: str | Path, work: str | Path, backend: str = "ort", resolution: tuple[int, int] = (640, 360),
    max_convs: int = 3, rounds: int = 30, runs: int = 3, threads: int | None = None,
    points: Sequence[int] | None = None,
) -> dict[tuple[int, int], tuple[Path, float]]:  # fmt: skip
    """Every (insertion point, convs) up to ``max_convs`` at each point (or at ``points``): its copy and
    measured slowdown ratio."""
    import onnx

    bundle = read_bundle(src)
    root = Path(work)
    every = range(len(insertion_points(onnx.load(str(bundle.onnx_path)))))
    chosen = list(points) if points is not None else list(every)
    copies = {(p, n): inject(bundle.path, root / f"p{p}-n{n}", n, p) for p in chosen for n in range(1, max_convs + 1)}
    w, h = resolution
    keys = list(copies)
    ratios = _time_pair([bundle.path, *(copies[k] for k in keys)], backend, (1, bundle.channels, h, w), rounds, runs,
                        threads)  # fmt: skip
    return {k: (copies[k], ratios[i + 1]) for i, k in enumerate(keys)}


def closest(measured: dict[tuple[int, int], tuple[Path, float]], target: float) -> tuple[int, int]:
    """The (point, convs) whose measured slowdown is closest to ``target`` (0.15 = 15%)."""
    return min(measured, key=lambda k: abs(measured[k][1] - 1.0 - target))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sr_edge.gate.inject", description=__doc__.splitlines()[0])
    p.add_argument("src", help="bundle folder to slow down")
    p.add_argument("dst", help="folder for the slowed copy (must not exist)")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--convs", type=int, help="identity convolutions to insert")
    p.add_argument("--point", type=int, help="with --convs: which inner map, narrowest first (default: >= 8 ch)")
    g.add_argument("--target", type=float, help="slowdown to aim at (0.15 = 15%%): measured here, interleaved")
    p.add_argument("--backend", default="ort")
    p.add_argument("--resolution", default="640x360", help="LR frame WxH the target is measured at")
    p.add_argument("--threads", type=int)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--max-convs", type=int, default=3, help="at each insertion point (default 3)")
    args = p.parse_args(argv)
    try:
        if Path(args.dst).exists():
            raise SrEdgeError(f"{args.dst} already exists; choose another destination")
        if args.convs is not None:
            print(inject(args.src, args.dst, args.convs, args.point))
            return 0
        from ..devices import Resolution

        res = Resolution.parse(args.resolution, "--resolution")
        import tempfile

        with tempfile.TemporaryDirectory(prefix="sr-edge-inject-") as work:
            measured = calibrate(args.src, work, args.backend, (res.width, res.height), args.max_convs, args.rounds,
                                 threads=args.threads)  # fmt: skip
            for (point, n), (_, ratio) in sorted(measured.items()):
                print(f"point {point}, {n} identity conv(s): measured ratio {ratio:.3f}", file=sys.stderr)
            best = closest(measured, args.target)
            shutil.copytree(measured[best][0], args.dst)
        ratio = measured[best][1]
        print(f"{args.dst}: point {best[0]}, {best[1]} conv(s), measured ratio {ratio:.3f}", file=sys.stderr)
        print(args.dst)
        return 0
    except SrEdgeError as e:
        print(f"sr-edge: error: {one_line(str(e))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
