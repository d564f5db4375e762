"""Structured channel pruning on torch-pruning's dependency graph, then fine-tuning with the
project's trainer (optionally distilled from the unpruned parent).

What is pruned: the deployment form of the model (ECBSR's re-parameterised PlainSR), so the
channels removed are the channels that run. torch-pruning's :class:`DependencyGraph` groups
every set of coupled channels (a conv's outputs, the PReLU after it, the next conv's inputs,
and everything a residual add ties to them); a group is pruned as one. Two kinds of group
are kept whole: any that reaches the network's output (its width is the image's), and any
feeding a pixel shuffle (torch-pruning does not model PixelShuffle's r^2 channel blocks, so
a pruned channel there would scramble the sub-pixel layout). PixelShuffle is registered as
a leaf that decouples its input from its output, and FSRCNN's sub-pixel deconvolution gets
its own pruner, so both are traced correctly.

How much: ``ratio`` (the share of MACs per output pixel to remove) or ``target_macs`` (the
MACs per output pixel to stay at or under). Each group keeps a count of channels that is a
multiple of ``round_to`` (a group narrower than that keeps a multiple of the largest power
of two below its width); the plan is found greedily, each step taking the group whose next
allowed count removes the least importance per MAC saved, until the target is met. So the
channel counts come out non-uniform; the checkpoint records them (its ``architecture``),
and every verb rebuilds the model from the file alone.

Importance (``importance``): ``magnitude`` is the L1 norm of each root filter (Li et al.,
ICLR 2017); ``group-norm`` the L2 norm over every parameter coupled to a channel
(DepGraph, Fang et al., CVPR 2023); ``taylor`` the first-order Taylor estimate |w * dL/dw|
summed over the group (Molchanov et al., CVPR 2019) on a few training batches.

A run folder holds ``pruned.safetensors`` (pruned, not yet fine-tuned), the trainer's
``last``/``best`` checkpoints and ``log.jsonl``, and ``prune.json``: the record (ratio,
params and MACs before/after, channel plan, PSNR of the parent, the pruned and the
fine-tuned model). An interrupted run (Ctrl-C) resumes exactly with ``resume=True``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn

from ..checkpoint import load_checkpoint, save_checkpoint
from ..data.datasets import resolve_dataset
from ..data.io import check_out_folder
from ..errors import DatasetNotFoundError, SrEdgeError, one_line
from ..evaluate import evaluate
from ..models import SRModel, model_card, model_from_checkpoint, model_stats
from ..models.classic import SubPixelDeconv
from ..models.profile import count_macs
from ..models.registry import architecture_record
from ..paths import WEIGHTS_DIR
from ..provenance import sha256_file, write_json
from ..resolve import torch_upscaler
from ..source import resolve_model, torch_model
from .prune_config import PRUNED, RECORD, Importance, PruneConfig, allowed_widths, default_round_to

if TYPE_CHECKING:
    from ..train.loop import TrainHooks

# LR side of the probe input used to trace the graph and count MACs (MACs per output pixel do
# not depend on it: every layer pads to keep its size).
_PROBE = 16

# --- torch-pruning glue ----------------------------------------------------------------


class _SubPixelDeconvPruner(tp.pruner.BasePruningFunc):
    """FSRCNN's deconvolution (weight c_in x c_out x k x k): inputs and outputs prune apart."""

    def prune_out_channels(self, layer: SubPixelDeconv, idxs: Sequence[int]) -> nn.Module:
        keep = [i for i in range(layer.c_out) if i not in set(idxs)]
        layer.weight = nn.Parameter(layer.weight.data[:, keep].clone())
        layer.bias = nn.Parameter(layer.bias.data[keep].clone())
        layer.c_out = len(keep)
        return layer

    def prune_in_channels(self, layer: SubPixelDeconv, idxs: Sequence[int]) -> nn.Module:
        keep = [i for i in range(layer.c_in) if i not in set(idxs)]
        layer.weight = nn.Parameter(layer.weight.data[keep].clone())
        layer.c_in = len(keep)
        return layer

    def get_out_channels(self, layer: SubPixelDeconv) -> int:
        return int(layer.c_out)

    def get_in_channels(self, layer: SubPixelDeconv) -> int:
        return int(layer.c_in)


class _PixelShufflePruner(tp.pruner.BasePruningFunc):
    """A leaf with its input and output channels apart (r^2 inputs make one output); groups
    that reach it are kept whole, so these are never called."""

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("a pixel shuffle's channels are pruned through the conv that feeds it")

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        raise RuntimeError("a pixel shuffle's channels are pruned through the conv that feeds it")

    def get_out_channels(self, layer: nn.Module) -> None:
        return None

    def get_in_channels(self, layer: nn.Module) -> None:
        return None


def _custom_pruners() -> dict[Any, Any]:
    return {SubPixelDeconv: _SubPixelDeconvPruner(), nn.PixelShuffle: _PixelShufflePruner()}


def _importance(kind: str) -> Any:
    if kind == "magnitude":  # the root filters' L1 norm (Li et al.)
        return tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first", normalizer="mean")
    if kind == "taylor":
        return tp.importance.GroupTaylorImportance(group_reduction="mean", normalizer="mean")
    return tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean", normalizer="mean")


@dataclass
class _Group:
    """One set of coupled channels that may be pruned: its root conv, width, channel order."""

    name: str  # the root module's name
    root: nn.Module
    handler: Callable[..., Any]
    width: int
    order: list[int]  # channels, least important first (the order they are dropped in)
    allowed: list[int]

    def dropped(self, keep: int) -> list[int]:
        return sorted(self.order[: self.width - keep])


@dataclass(frozen=True)
class PrunePlan:
    """What :func:`prune_model` did: MACs per output pixel before/after, the kept width of
    every group, why some groups were kept whole, and the output error of the plan."""

    macs_before: float
    macs_after: float
    target_macs: float
    round_to: int
    widths: dict[str, tuple[int, int]]  # root layer -> (before, after)
    kept_whole: dict[str, str]  # root layer -> reason
    calibration_mse: float  # pruned vs parent output on the calibration batches, as pruned
    reconstructed_mse: float | None = None  # the same after the least-squares reconstruction

    @property
    def removed(self) -> float:
        return 1.0 - self.macs_after / self.macs_before

    def to_json(self) -> dict[str, Any]:
        return {
            "macs_before": self.macs_before,
            "macs_after": self.macs_after,
            "target_macs": self.target_macs,
            "removed": round(self.removed, 4),
            "round_to": self.round_to,
            "widths": {k: list(v) for k, v in self.widths.items()},
            "kept_whole": self.kept_whole,
            "calibration_mse": self.calibration_mse,
            "reconstructed_mse": self.reconstructed_mse,
        }


class _MacModel:
    """MACs per output pixel as a function of each group's kept width.

    A layer's MACs are proportional to its input width (for a depthwise conv: its width)
    times its output width; a concatenated input takes channels from several groups."""

    def __init__(self, net: nn.Module, example: torch.Tensor, scale: int) -> None:
        self.base: dict[nn.Module, float] = {}
        self.in0: dict[nn.Module, int] = {}
        inputs: dict[nn.Module, torch.Tensor] = {}
        kinds = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, SubPixelDeconv)

        def grab(m: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            inputs.setdefault(m, args[0].detach())

        handles = [m.register_forward_hook(grab) for m in net.modules() if isinstance(m, kinds)]
        try:
            with torch.no_grad():
                net(example)
        finally:
            for h in handles:
                h.remove()
        pixels = example.shape[-1] * example.shape[-2] * scale * scale
        for m, x in inputs.items():
            self.base[m] = count_macs(m, x) / pixels
            self.in0[m] = int(x.shape[1])
        self.out_of: dict[nn.Module, int] = {}
        self.in_parts: dict[nn.Module, dict[int, int]] = {}
        self.width0: list[int] = []

    @property
    def total(self) -> float:
        return sum(self.base.values())

    def add_group(self, index: int, width: int, deps: list[tuple[nn.Module, bool, int]]) -> None:
        """Group ``index`` of ``width`` channels: (module, is output side, channels of it) for each layer it reaches."""
        self.width0.append(width)
        for module, is_out, n in deps:
            if module not in self.base:
                continue
            if is_out:
                self.out_of[module] = index
            elif not _depthwise(module):
                parts = self.in_parts.setdefault(module, {})
                parts[index] = max(parts.get(index, 0), n)

    def macs(self, widths: Sequence[int]) -> float:
        total = 0.0
        for m, base in self.base.items():
            g = self.out_of.get(m)
            f_out = widths[g] / self.width0[g] if g is not None else 1.0
            if _depthwise(m):
                total += base * f_out
                continue
            lost = sum(n * (1 - widths[i] / self.width0[i]) for i, n in self.in_parts.get(m, {}).items())
            total += base * f_out * (self.in0[m] - lost) / self.in0[m]
        return total


def _depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


class _Masker:
    """The network with some channels of some groups zeroed where they are produced: what the
    network computes once they are pruned (a zero channel stays zero through ReLU / PReLU and
    adds nothing downstream), measured without pruning: the plan's output error."""

    def __init__(self, net: nn.Module, graph: Any, batches: Sequence[torch.Tensor]) -> None:
        self.net, self.graph, self.batches = net, graph, batches
        self.saved: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}  # id -> (tensor, its unmasked values)
        with torch.no_grad():
            self.reference = [net(x) for x in batches]
        self._targets: dict[tuple[int, tuple[int, ...]], list[tuple[nn.Module, list[int]]]] = {}

    def _produced(self, g: _Group, drop: list[int]) -> list[tuple[nn.Module, list[int]]]:
        key = (id(g.root), tuple(drop))
        if key not in self._targets:
            group = self.graph.get_pruning_group(g.root, g.handler, drop)
            self._targets[key] = [
                (dep.target.module, list(idxs))
                for dep, idxs in group
                if self.graph.is_out_channel_pruning_fn(dep.handler) and hasattr(dep.target.module, "weight")
            ]
        return self._targets[key]

    def _zero(self, tensor: torch.Tensor, dim: int, idxs: list[int]) -> None:
        self.saved.setdefault(id(tensor), (tensor, tensor.detach().clone()))
        tensor.index_fill_(dim, torch.tensor(idxs), 0.0)

    @torch.no_grad()
    def error(self, groups: Sequence[_Group], widths: Sequence[int]) -> float:
        """Mean squared difference from the unpruned output with ``widths`` kept."""
        self.restore()
        for g, keep in zip(groups, widths, strict=True):
            if keep < g.width:
                for module, idxs in self._produced(g, g.dropped(keep)):
                    # SubPixelDeconv's weight is c_in x c_out x k x k; every other layer's is out-first
                    self._zero(getattr(module, "weight"), 1 if isinstance(module, SubPixelDeconv) else 0, idxs)  # noqa: B009
                    bias = getattr(module, "bias", None)
                    if isinstance(bias, torch.Tensor):
                        self._zero(bias, 0, idxs)
        err = sum(float(F.mse_loss(self.net(x), ref)) for x, ref in zip(self.batches, self.reference, strict=True))
        return err / len(self.batches)

    @torch.no_grad()
    def restore(self) -> None:
        """Every zeroed tensor back to its values."""
        for tensor, values in self.saved.values():
            tensor.copy_(values)


def _sensitivity(groups: list[_Group], masker: _Masker) -> list[dict[int, float]]:
    """Output error with one group narrowed to each of its allowed widths, the rest whole
    (layer-wise sensitivity, as in Li et al.): one forward pass per (group, width)."""
    full = [g.width for g in groups]
    table = []
    for i, g in enumerate(groups):
        row = {g.width: 0.0}
        for w in g.allowed[1:]:
            row[w] = masker.error(groups, [*full[:i], w, *full[i + 1 :]])
        table.append(row)
    return table


def _reconstructed_sensitivity(
    groups: list[_Group], net: nn.Module, example: torch.Tensor, masker: _Masker
) -> list[dict[int, float]]:
    """As :func:`_sensitivity`, but each narrowing is pruned for real on a copy and its
    consumers refitted (:func:`_reconstruct`) before the error is measured: what the plan
    will actually cost, where a layer's loss is partly recoverable and another's is not."""
    table = []
    for g in groups:
        row = {g.width: 0.0}
        for w in g.allowed[1:]:
            trial = copy.deepcopy(net)
            graph = tp.DependencyGraph().build_dependency(
                trial, example_inputs=example, customized_pruners=_custom_pruners()
            )
            names = {m: n for n, m in trial.named_modules()}
            root = dict(trial.named_modules())[g.name]
            group = graph.get_pruning_group(root, graph.get_pruner_of_module(root).prune_out_channels, g.dropped(w))
            kept: dict[tuple[str, str], list[int]] = {}
            _record_kept(group, graph, names, kept)
            group.prune()
            _reconstruct(net, trial, kept, masker.batches)
            with torch.no_grad():
                row[w] = sum(
                    float(F.mse_loss(trial(x), ref)) for x, ref in zip(masker.batches, masker.reference, strict=True)
                ) / len(masker.batches)
        table.append(row)
    return table


def _plan(groups: list[_Group], macs: _MacModel, table: list[dict[int, float]], target: float) -> list[int] | None:
    """Kept widths with at most ``target`` MACs: greedily lower the group whose next allowed
    width adds the least output error (summed over groups, from ``table``) per MAC saved; then
    widen back, while the target holds, whatever lowers the error most (the last step may have
    overshot). None when even the narrowest widths miss the target."""
    widths = [g.width for g in groups]
    current = macs.macs(widths)
    while current > target:
        best: tuple[float, int, int, float] | None = None
        for i, g in enumerate(groups):
            lower = next((w for w in g.allowed if w < widths[i]), None)
            if lower is None:
                continue
            after = macs.macs([*widths[:i], lower, *widths[i + 1 :]])
            if after >= current:
                continue
            key = (table[i][lower] - table[i][widths[i]]) / (current - after)
            if best is None or key < best[0]:
                best = (key, i, lower, after)
        if best is None:
            return None
        _, i, widths[i], current = best
    while True:
        up: tuple[float, int, int] | None = None
        for i, g in enumerate(groups):
            wider = next((w for w in reversed(g.allowed) if w > widths[i]), None)
            if wider is None or macs.macs([*widths[:i], wider, *widths[i + 1 :]]) > target:
                continue
            gain = table[i][widths[i]] - table[i][wider]
            if gain > 0 and (up is None or gain > up[0]):
                up = (gain, i, wider)
        if up is None:
            return widths
        _, i, widths[i] = up


def _record_kept(group: Any, graph: Any, names: dict[nn.Module, str], kept: dict[tuple[str, str], list[int]]) -> None:
    """Before ``group`` is pruned: which original channels of each layer it touches remain after."""
    seen: set[tuple[str, str]] = set()
    for dep, idxs in group:
        module = dep.target.module
        if not isinstance(module, (nn.Conv2d, nn.Linear, SubPixelDeconv)):
            continue
        side = "out" if graph.is_out_channel_pruning_fn(dep.handler) else "in"
        key = (names[module], side)
        if key in seen:
            continue
        seen.add(key)
        if key not in kept:
            n = graph.get_out_channels(module) if side == "out" else graph.get_in_channels(module)
            kept[key] = list(range(int(n)))
        gone = set(idxs)
        kept[key] = [c for j, c in enumerate(kept[key]) if j not in gone]


_RECONSTRUCT_ROWS = 32768  # sampled output positions per layer: plenty for <= a few hundred unknowns


def _ridge(a: torch.Tensor, b: torch.Tensor, intercept: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(weights: features x outputs, intercept or None) minimising ||a w + c - b||^2 + a tiny ridge, in float64."""
    a = a.double()
    if intercept:
        a = torch.cat([a, torch.ones(a.shape[0], 1, dtype=a.dtype)], dim=1)
    gram = a.T @ a
    ridge = 1e-5 * float(gram.diagonal().mean()) + 1e-12
    solution = torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=a.dtype), a.T @ b.double())
    return (solution[:-1], solution[-1]) if intercept else (solution, None)


def _sample_rows(cols: torch.Tensor, target: torch.Tensor, n: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    pick = torch.randperm(cols.shape[0], generator=gen)[:n]
    return cols[pick], target[pick]


@torch.no_grad()
def _reconstruct(
    parent: nn.Module, net: nn.Module, kept: dict[tuple[str, str], list[int]], batches: Sequence[torch.Tensor]
) -> None:
    """Refit every convolution of ``net`` that lost input channels so that its output matches
    the same layer of ``parent`` (its kept output channels), by ridge regression on the layer's
    actual inputs in ``net``; in execution order, so each fit sees the fixes before it."""
    order: list[str] = []
    modules = dict(net.named_modules())
    parent_modules = dict(parent.named_modules())

    def note(name: str) -> Callable[..., None]:
        def hook(_m: nn.Module, _a: Any, _o: Any) -> None:
            if name not in order:
                order.append(name)

        return hook

    kinds = (nn.Conv2d, SubPixelDeconv)
    handles = [m.register_forward_hook(note(n)) for n, m in modules.items() if isinstance(m, kinds)]
    try:
        net(batches[0])
    finally:
        for h in handles:
            h.remove()
    gen = torch.Generator().manual_seed(0)
    per_batch = max(1, _RECONSTRUCT_ROWS // len(batches))
    for name in order:
        layer, keep_in = modules[name], kept.get((name, "in"))
        if keep_in is None:
            continue
        xs = _layer_io(net, layer, batches)
        xs_parent = _layer_io(parent, parent_modules[name], batches)
        if isinstance(layer, SubPixelDeconv):
            _refit_deconv(layer, parent_modules[name], xs, xs_parent, per_batch, gen)
            continue
        conv = layer
        if not isinstance(conv, nn.Conv2d) or conv.groups != 1 or isinstance(conv.padding, str):
            continue
        keep_out = kept.get((name, "out"), list(range(conv.out_channels)))
        ys = [parent_modules[name](x) for x in xs_parent]
        rows = []
        for x, y in zip(xs, ys, strict=True):
            cols = F.unfold(x, conv.kernel_size, dilation=conv.dilation, padding=conv.padding, stride=conv.stride)
            cols = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])  # positions x (C * kh * kw)
            target = y[:, keep_out].permute(0, 2, 3, 1).reshape(-1, len(keep_out))
            rows.append(_sample_rows(cols, target, per_batch, gen))
        w, c = _ridge(torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]), conv.bias is not None)
        conv.weight.copy_(w.T.reshape(conv.weight.shape))
        if conv.bias is not None and c is not None:
            conv.bias.copy_(c)


def _refit_deconv(
    layer: SubPixelDeconv,
    parent: nn.Module,
    xs: Sequence[torch.Tensor],
    xs_parent: Sequence[torch.Tensor],
    per_batch: int,
    gen: torch.Generator,
) -> None:
    """The same refit for FSRCNN's deconvolution, on the LR-grid convolution it runs: each of
    its s^2 * c_out output rows reads its own taps, and every tap is one entry of the
    transposed-conv weight, so each row is a separate least-squares fit (bias kept)."""
    s, size, kernel = layer.stride, layer.index.shape[1], layer.kernel

    def padded(x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, (layer.t_max, -layer.t_min, layer.t_max, -layer.t_min))

    p_weight, p_bias = parent.subpixel_kernel()  # type: ignore[operator]
    cols_all, targets = [], []
    for x, xp in zip(xs, xs_parent, strict=True):
        y = F.conv2d(padded(xp), p_weight, p_bias)  # parent's rows, before the shuffle
        cols = F.unfold(padded(x), size)
        cols = cols.permute(0, 2, 1).reshape(-1, cols.shape[1])  # positions x (c_in * size * size)
        target = y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
        picked = _sample_rows(cols, target, per_batch, gen)
        cols_all.append(picked[0])
        targets.append(picked[1])
    cols, target = torch.cat(cols_all), torch.cat(targets)
    c_in = layer.c_in
    weight = layer.weight.detach().clone()
    taps = cols.view(cols.shape[0], c_in, size, size)
    for o in range(layer.c_out):
        for ay in range(s):
            for ax in range(s):
                row = o * s * s + ay * s + ax
                uy, ux = layer.index[ay], layer.index[ax]  # kernel rows/columns each tap reads
                jy = (uy < kernel).nonzero().flatten()
                jx = (ux < kernel).nonzero().flatten()
                a = taps[:, :, jy][:, :, :, jx].reshape(cols.shape[0], -1)
                w, _ = _ridge(a, (target[:, row] - layer.bias[o].double()).unsqueeze(1), intercept=False)
                fitted = w.view(c_in, len(jy), len(jx)).to(weight.dtype)
                weight[:, o, uy[jy][:, None], ux[jx][None, :]] = fitted
    layer.weight.copy_(weight)


def _layer_io(
    net: nn.Module, layer: nn.Module, batches: Sequence[torch.Tensor], output: bool = False
) -> list[torch.Tensor]:
    """``layer``'s input (or output) in ``net`` for each batch."""
    seen: list[torch.Tensor] = []

    def hook(_m: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        seen.append((out if output else args[0]).detach())

    handle = layer.register_forward_hook(hook)
    try:
        for x in batches:
            net(x)
    finally:
        handle.remove()
    return seen[: len(batches)]


def _deployed(model: nn.Module) -> nn.Module:
    """The deployment form of a zoo model (any other module as it is)."""
    return model.deploy() if isinstance(model, SRModel) else model


def _unsupported(name: str, e: BaseException) -> SrEdgeError:
    return SrEdgeError(f"{name}: torch-pruning cannot prune this architecture ({type(e).__name__}: {one_line(str(e))})")


def prune_model(
    model: nn.Module,
    scale: int,
    channels: int,
    calibration: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    ratio: float | None = None,
    target_macs: float | None = None,
    importance: Importance = "group-norm",
    round_to: int = 8,
    reconstruct: bool = True,
    name: str = "model",
) -> tuple[SRModel, PrunePlan]:
    """Prune a copy of ``model``'s deployment form so that at least ``ratio`` of its MACs per
    output pixel go, or at most ``target_macs`` remain; returns (pruned copy, plan).

    ``calibration``: (LR, HR) batches of training patches. They rank how much each group's
    narrowing costs (the output's departure from the unpruned model's), and give ``taylor``
    its gradients. Within a group, ``importance`` picks the channels. ``reconstruct``: refit
    each convolution that lost inputs to its unpruned output by least squares on the same
    batches (He et al., ICCV 2017), layer by layer in execution order, so that fine-tuning
    starts near the parent; the layers are then also ranked by their error after that refit
    (slower: one traced copy per layer and width) rather than by zeroing channels. ``model``
    is not changed.
    """
    if (ratio is None) == (target_macs is None):
        raise SrEdgeError("give exactly one of ratio and target_macs")
    if not calibration:
        raise SrEdgeError("pruning needs calibration batches (LR, HR) of training patches")
    deployed = model.deploy() if isinstance(model, SRModel) else model
    net = copy.deepcopy(deployed).float().cpu().eval()
    if not isinstance(net, SRModel):
        raise SrEdgeError(f"{name}: not a zoo model (SRModel)")
    # torch-pruning traces autograd's graph; an in-place ReLU hides the conv before it (ESPCN
    # traced as one conv), so the copy runs out of place while it is traced and pruned.
    inplace = {m: m.inplace for m in net.modules() if isinstance(getattr(m, "inplace", None), bool)}
    for m in inplace:
        m.inplace = False  # type: ignore[assignment]
    example = torch.rand(1, channels, _PROBE, _PROBE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference_shape = tuple(net(example).shape)
    names = {m: n for n, m in net.named_modules()}
    try:
        graph = tp.DependencyGraph().build_dependency(net, example_inputs=example, customized_pruners=_custom_pruners())
        all_groups = list(graph.get_all_groups(root_module_types=[nn.Conv2d, nn.Linear]))
    except Exception as e:
        raise _unsupported(name, e) from None
    macs = _MacModel(net, example, scale)
    total = macs.total
    target = float(target_macs) if target_macs is not None else total * (1.0 - float(ratio or 0.0))
    if target >= total:
        raise SrEdgeError(f"{name}: {total:,.0f} MACs per output pixel already meet the target {target:,.0f}")

    if importance == "taylor":
        net.zero_grad(set_to_none=True)
        for lr, hr in calibration:
            F.l1_loss(net(lr), hr).backward()
    scorer = _importance(importance)
    groups: list[_Group] = []
    kept_whole: dict[str, str] = {}
    for group in all_groups:
        root = group[0].dep.target.module
        root_name = names.get(root, type(root).__name__)
        targets = [type(dep.target.module).__name__ for dep, _ in group]
        if "_OutputOp" in targets:
            kept_whole[root_name] = "its channels are the network's output"
            continue
        if "PixelShuffle" in targets:
            kept_whole[root_name] = "feeds a pixel shuffle (r^2 channel blocks)"
            continue
        width = graph.get_out_channels(root)
        allowed = allowed_widths(int(width), round_to) if width else []
        if len(allowed) < 2:
            kept_whole[root_name] = f"{width} channels: no narrower multiple of {round_to}"
            continue
        try:
            scores = scorer(group)
        except Exception as e:
            raise _unsupported(name, e) from None
        if scores is None or scores.numel() != width or not torch.isfinite(scores).all():
            scores = torch.zeros(int(width))  # no parameter to judge by: drop the last channels first
        # a stable order: ties (e.g. all-zero scores) drop the highest index first
        order = sorted(range(int(width)), key=lambda c: (float(scores[c]), -c))
        deps = [
            (dep.target.module, bool(graph.is_out_channel_pruning_fn(dep.handler)), len(idxs)) for dep, idxs in group
        ]
        macs.add_group(len(groups), int(width), deps)
        groups.append(_Group(root_name, root, group[0].dep.handler, int(width), order, allowed))
    net.zero_grad(set_to_none=True)
    if not groups:
        reasons = "; ".join(f"{k}: {v}" for k, v in kept_whole.items()) or "no convolution"
        raise SrEdgeError(f"{name}: nothing to prune (every channel group is kept whole: {reasons})")

    masker = _Masker(net, graph, [lr.float() for lr, _ in calibration])
    try:
        if reconstruct:
            table = _reconstructed_sensitivity(groups, copy.deepcopy(net), example, masker)
        else:
            table = _sensitivity(groups, masker)
        widths = _plan(groups, macs, table, target)
        if widths is None:
            floor = macs.macs([g.allowed[-1] for g in groups])
            raise SrEdgeError(
                f"{name}: cannot reach {target:,.0f} MACs per output pixel ({1 - target / total:.0%} removed) with "
                f"channels in multiples of {round_to}: at most {1 - floor / total:.0%} can go (try a lower --round-to)"
            )
        mse = masker.error(groups, widths)
        with torch.no_grad():
            masked_out = [net(x) for x in masker.batches]
    finally:
        masker.restore()
    planned = macs.macs(widths)
    parent_net = copy.deepcopy(net)  # unpruned, for the reconstruction targets
    kept: dict[tuple[str, str], list[int]] = {}  # (layer, "in"/"out") -> its original channels still there
    for g, keep in zip(groups, widths, strict=True):
        if keep < g.width:
            try:
                group = graph.get_pruning_group(g.root, g.handler, g.dropped(keep))
                _record_kept(group, graph, names, kept)
                group.prune()
            except Exception as e:
                raise _unsupported(name, e) from None
    for m, flag in inplace.items():
        m.inplace = flag
    with torch.no_grad():
        shape = tuple(net(example).shape)
        pruned_out = [net(x) for x in masker.batches]
    if shape != reference_shape:
        raise _unsupported(name, RuntimeError(f"output shape {shape} after pruning, {reference_shape} before"))
    # Two checks of the machinery itself (a failure is a bug, not the user's): the pruned
    # network computes what the masked one did, and has the MACs the plan counted.
    gap = max(float((a - b).abs().max()) for a, b in zip(pruned_out, masked_out, strict=True))
    if gap > 1e-3:
        raise RuntimeError(f"{name}: the pruned network differs from its masked plan by {gap:.2e}")
    after = model_stats(net, channels, scale).macs_per_output_pixel
    if abs(after - planned) > 1e-3 * total:
        raise RuntimeError(f"{name}: planned {planned:.1f} MACs per output pixel, the pruned network has {after:.1f}")
    if reconstruct:
        _reconstruct(parent_net, net, kept, masker.batches)
    with torch.no_grad():
        mse_after = sum(
            float(F.mse_loss(net(x), ref)) for x, ref in zip(masker.batches, masker.reference, strict=True)
        ) / len(masker.batches)
    plan = PrunePlan(
        macs_before=round(total, 3),
        macs_after=round(after, 3),
        target_macs=round(target, 3),
        round_to=round_to,
        widths={g.name: (g.width, w) for g, w in zip(groups, widths, strict=True)},
        kept_whole=kept_whole,
        calibration_mse=mse,
        reconstructed_mse=mse_after if reconstruct else None,
    )
    return net.train(), plan


# --- a pruning run ---------------------------------------------------------------------


@dataclass(frozen=True)
class PruneResult:
    """Where a run ended: its checkpoints, record, step, and whether Ctrl-C stopped it."""

    out: Path
    checkpoint: Path  # the fine-tuned weights (``last``), or ``pruned`` when steps == 0
    pruned: Path
    record: dict[str, Any]
    step: int
    interrupted: bool
    seconds: float


def _eval_sets(names: Sequence[str], data_root: str | None) -> list[Any]:
    sets = []
    for n in names:
        try:
            sets.append(resolve_dataset(n, data_root))
        except DatasetNotFoundError:
            continue
    if names and not sets:
        sets.append(resolve_dataset(None))  # a fresh clone without the eval sets: the embedded samples
    return sets


def _quality(model: nn.Module, name: str, color_mode: str, sets: Sequence[Any]) -> dict[str, float]:
    out = {}
    for ds in sets:
        r = evaluate(torch_upscaler(model, name, color_mode), ds)
        out[ds.name] = round(r.psnr_y, 4)
    return out


def _calibration(config: PruneConfig, color_mode: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Training batches (never the held-out images) for Taylor importance."""
    from ..train.data import PatchSampler, split_validation, training_files

    files, _ = split_validation(training_files(config.data, config.data_root), config.val_fraction)
    sampler = PatchSampler(files, config.scale, color_mode, config.patch_size, skip_small=config.skip_small)
    out = []
    for step in range(config.calibration_batches):
        lr, hr = sampler.batch(config.seed + 7919, step, config.batch_size)
        out.append((torch.from_numpy(lr), torch.from_numpy(hr)))
    return out


def distillation_loss(
    teacher: nn.Module, weight: float, pixel: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(1 - weight) * pixel(sr, hr) + weight * pixel(sr, teacher(lr))``; the teacher is frozen."""
    teacher = teacher.eval().requires_grad_(False)
    placed: list[torch.device] = []

    def loss(sr: torch.Tensor, hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        if not placed or placed[0] != lr.device:
            teacher.to(lr.device)
            placed[:] = [lr.device]
        with torch.no_grad():
            target = teacher(lr)
        return (1.0 - weight) * pixel(sr, hr) + weight * pixel(sr, target)

    return loss


def _hooks(config: PruneConfig, pruned_path: Path, parent: nn.Module, meta: dict[str, Any]) -> TrainHooks:
    from ..train.loop import TrainHooks, pixel_loss

    def build() -> nn.Module:
        # Deterministic: the recorded architecture with the pruned weights (a resumed run then
        # loads its own last checkpoint over them).
        model, _ = model_from_checkpoint(pruned_path)
        return model.train()

    loss = (
        distillation_loss(copy.deepcopy(_deployed(parent)), config.distill_weight, pixel_loss(config.loss))
        if config.distill
        else None
    )
    return TrainHooks(model=build, loss=loss, meta=meta)


def _check_run_folder(out: Path, resume: bool) -> None:
    from ..train.loop import LAST

    check_out_folder(out)
    if out.exists() and not out.is_dir():
        raise SrEdgeError(f"{out} exists and is not a folder; choose another --out")
    has_run = (out / PRUNED).exists() or (out / LAST).exists()
    if not resume and has_run:
        raise SrEdgeError(f"{out} already holds a pruning run; pass --resume to continue it or choose another --out")
    if resume and not (out / PRUNED).exists():
        raise SrEdgeError(f"nothing to resume: {out / PRUNED} does not exist")


def prune(config: PruneConfig, resume: bool = False, progress: bool = True) -> PruneResult:
    """Prune ``config.source``, fine-tune it and record the result in ``config.out``.

    Every check that can fail (the source, its scale and architecture, the folder, the data,
    whether the target can be met) runs before anything is written. ``resume`` continues an
    interrupted run in ``config.out`` exactly (its pruning is not redone)."""
    from ..train.data import training_files
    from ..train.loop import train

    started = time.time()
    if config.threads:
        torch.set_num_threads(config.threads)
    source = resolve_model(config.source)
    if source.kind not in ("zoo", "checkpoint"):
        raise SrEdgeError(
            f"{config.source}: a {source.kind}, not weights; name a zoo model or a .safetensors checkpoint"
        )
    parent, provenance = torch_model(source, config.scale)
    name = str(provenance["model"])
    card = model_card(name)
    overrides = dict(provenance.get("overrides") or {})
    out = Path(config.out)
    _check_run_folder(out, resume)
    if config.steps > 0:
        training_files(config.data, config.data_root)  # a missing training folder fails now
    sets = _eval_sets(config.eval_datasets, config.data_root)
    pruned_path = out / PRUNED

    if resume:
        saved = load_checkpoint(pruned_path)
        record = dict(saved.meta.get("pruning") or {})
        conflicts = config.resume_conflicts(record.get("config") or {})
        if conflicts:
            raise SrEdgeError(f"cannot resume {out}: options differ from the saved run: {', '.join(conflicts)}")
        if (record.get("parent") or {}).get("checkpoint_sha256") != provenance.get("checkpoint_sha256"):
            raise SrEdgeError(f"cannot resume {out}: it was pruned from other weights than {config.source}")
        architecture = saved.meta["architecture"]
    else:
        if config.round_to is not None:
            round_to, why = int(config.round_to), "given"
        else:
            from ..devices import load_profile

            round_to, why = default_round_to(load_profile(config.profile) if config.profile else None)
        calibration = _calibration(config, card.color_mode)
        parent_stats = model_stats(parent.deploy(), card.channels, config.scale)
        net, plan = prune_model(
            parent,
            config.scale,
            card.channels,
            calibration,
            ratio=config.ratio,
            target_macs=config.target_macs,
            importance=config.importance,
            round_to=round_to,
            name=name,
        )
        stats = model_stats(net, card.channels, config.scale)
        form = "train" if parent.deploy() is parent else "deploy"
        architecture = architecture_record(net, form, overrides)
        record = {
            "config": config.to_json(),
            "parent": provenance,
            "round_to_reason": why,
            "plan": plan.to_json(),
            "params": {"before": parent_stats.params, "after": stats.params},
            "macs_per_output_pixel": {"before": parent_stats.macs_per_output_pixel, "after": plan.macs_after},
            "removed_macs": round(plan.removed, 4),
            "psnr_y": {
                "parent": _quality(parent, name, card.color_mode, sets),
                "pruned": _quality(net, name, card.color_mode, sets),
            },
        }
        save_checkpoint(
            pruned_path,
            name,
            config.scale,
            net.state_dict(),
            {"architecture": architecture, "pruning": record},
            overrides,
        )

    meta = {"architecture": architecture, "pruning": record}
    step, interrupted, final = 0, False, pruned_path
    best_val = None
    if config.steps > 0:
        from ..train.loop import LAST

        options = tuple(sorted(overrides.items()))
        hooks = _hooks(config, pruned_path, parent, meta)
        result = train(
            config.train_config(name, options), resume=resume and (out / LAST).exists(), progress=progress, hooks=hooks
        )
        step, interrupted, final, best_val = result.step, result.interrupted, result.last, result.best_val_psnr
    summary = dict(record)
    if not interrupted:
        model, _ = model_from_checkpoint(final)
        summary["psnr_y"] = {**record["psnr_y"], "finetuned": _quality(model, name, card.color_mode, sets)}
        summary.update(
            {
                "architecture": {k: architecture[k] for k in ("form", "class", "channels")},
                "finetune": {"steps": step, "checkpoint": final.name, "best_val_psnr_y": best_val},
                "seconds": round(time.time() - started, 1),
            }
        )
        write_json(out / RECORD, summary)
    return PruneResult(out, final, pruned_path, summary, step, interrupted, time.time() - started)


# --- shipping a pruned variant -----------------------------------------------------------


def variant_tag(record: dict[str, Any]) -> str:
    """``pruned50`` for ``--ratio 0.5``; with ``--target-macs``, the share actually removed."""
    ratio = record["config"].get("ratio")
    share = float(ratio) if ratio is not None else float(record["removed_macs"])
    return f"pruned{round(100 * share)}"


def ship(run_dir: Path, which: str = "last", dest: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """Copy a finished run's weights (no optimizer state) to ``<dest>/<model>_x<s>_pruned<NN>.safetensors``
    with a measured card beside it: ratio, params and MACs before/after, channel plan, and
    PSNR/SSIM on Set5, Set14, B100 of the parent, the pruned and the fine-tuned model."""
    from ..train.ship import measure

    record_path = run_dir / RECORD
    if not record_path.is_file():
        raise SrEdgeError(f"{run_dir}: no {RECORD}; the run has not finished (resume it first)")
    record = json.loads(record_path.read_text())
    model, ckpt = model_from_checkpoint(run_dir / f"{which}.safetensors")
    before_finetune, _ = model_from_checkpoint(run_dir / PRUNED)
    parent, _ = torch_model(resolve_model(record["config"]["source"]), ckpt.scale)
    card = model_card(ckpt.model)
    tag = variant_tag(record)
    target = dest / f"{ckpt.model}_x{ckpt.scale}_{tag}.safetensors"
    fields = ("architecture", "pruning", "train_config", "data", "step", "wall_seconds", "metrics", "git", "device")
    keep: dict[str, Any] = {k: ckpt.meta[k] for k in fields if k in ckpt.meta}
    save_checkpoint(target, ckpt.model, ckpt.scale, model.state_dict(), meta=keep, overrides=ckpt.overrides)
    stats = model_stats(model.deploy(), card.channels, ckpt.scale)
    info = {
        "model": ckpt.model,
        "variant": tag,
        "family": card.family,
        "scale": ckpt.scale,
        "color_mode": card.color_mode,
        "params": stats.params,
        "macs_per_output_pixel": round(stats.macs_per_output_pixel, 1),
        "gmacs_1280x720_output": round(stats.gmacs(1280, 720), 3),
        "parent": {
            **record["parent"],
            "params": record["params"]["before"],
            "macs_per_output_pixel": record["macs_per_output_pixel"]["before"],
        },
        "removed_macs": record["removed_macs"],
        "architecture": record.get("architecture"),
        "plan": record["plan"],
        "prune_config": record["config"],
        "steps": ckpt.meta.get("step"),
        "wall_hours": round(float(ckpt.meta.get("wall_seconds", 0.0)) / 3600, 2),
        "train_config": ckpt.meta.get("train_config", {}),
        "quality": measure(model, ckpt.model, card.color_mode),
        "quality_parent": measure(parent, ckpt.model, card.color_mode),
        "quality_pruned_before_finetune": measure(before_finetune, ckpt.model, card.color_mode),
        "sha256": sha256_file(target),
        "file": target.name,
    }
    write_json(target.with_suffix(".json"), info)
    return info


def main(argv: list[str] | None = None) -> int:
    """``python -m sr_edge.compress.prune ship RUN_DIR...``: ship finished pruning runs."""
    parser = argparse.ArgumentParser(prog="python -m sr_edge.compress.prune", description=ship.__doc__)
    parser.add_argument("action", choices=["ship"])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last")
    args = parser.parse_args(argv)
    for run in args.runs:
        info = ship(run, args.checkpoint)
        q = ", ".join(
            f"{k} {v['psnr_y']:.2f} (parent {info['quality_parent'][k]['psnr_y']:.2f})"
            for k, v in info["quality"].items()
        )
        print(json.dumps({"file": info["file"], "sha256": info["sha256"]}))
        print(f"  {q}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "PRUNED",
    "RECORD",
    "Importance",
    "PruneConfig",
    "PrunePlan",
    "PruneResult",
    "allowed_widths",
    "default_round_to",
    "distillation_loss",
    "prune",
    "prune_model",
    "ship",
    "variant_tag",
]
