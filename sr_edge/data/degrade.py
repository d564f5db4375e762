"""Realistic degradations: blur, downsampling by several methods, noise and JPEG.

Two users, one set of primitives:

- **Training** (:class:`DegradationConfig`, :func:`realistic_lr`): a random degradation per
  patch in the spirit of Real-ESRGAN's practical pipeline (Wang et al., 2021): blur with an
  isotropic, anisotropic, generalised or plateau Gaussian kernel, downsampling with a
  random method, Gaussian or Poisson noise (colour or grey), JPEG at a random quality, and
  an optional second round of the same. Every draw comes from the generator passed in, so
  a patch is a function of its seed.
- **Evaluation** (:class:`LrDegradation`, :func:`parse_degrade`): fixed operations applied
  to the protocol's bicubic LR (``jpeg:75``, ``noise:5``, ``blur:1.2``, joined with ``+``,
  or a TOML file), with a seed per image, so tables compare models on the same degraded input.

JPEG goes through Pillow's libjpeg (never a codec of our own). Values are on the 0-255
scale in float32 between operations and rounded to uint8 where a real pipeline would store
the image (before JPEG, at the end). Sigmas of blur are in LR pixels (scaled to the
resolution they are applied at), noise sigmas in grey levels of 255. Imports no torch.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ..errors import SrEdgeError, one_line
from .resize import imresize

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 needs the backport
    import tomli as tomllib

ResizeMethod = Literal["bicubic", "bilinear", "area", "lanczos", "bicubic-aliased"]
RESIZE_METHODS: tuple[str, ...] = get_args(ResizeMethod)
MAX_KERNEL = 31  # HR pixels; a 31x31 kernel covers sigma 5 at +-3 sigma


# --- primitives -------------------------------------------------------------------------


def blur_kernel(
    size: int,
    sigma_x: float,
    sigma_y: float | None = None,
    angle: float = 0.0,
    beta: float = 1.0,
    shape: Literal["gaussian", "generalized", "plateau"] = "gaussian",
) -> np.ndarray:
    """A ``size`` x ``size`` blur kernel (odd size) that sums to 1, float64.

    ``gaussian``: exp(-q/2) with q = d^T S^-1 d, S the covariance of sigmas ``sigma_x``,
    ``sigma_y`` rotated by ``angle`` (radians); ``generalized``: exp(-(q/2)^beta)
    (beta < 1 heavier tails, > 1 flatter top); ``plateau``: 1 / (1 + (q/2)^beta)
    (Real-ESRGAN's kernel families).
    """
    if size < 1 or size % 2 == 0:
        raise SrEdgeError(f"blur kernel size must be odd and positive, got {size}")
    sy = sigma_x if sigma_y is None else sigma_y
    if sigma_x <= 0 or sy <= 0:
        raise SrEdgeError(f"blur sigmas must be positive, got {sigma_x}, {sy}")
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    inv = np.linalg.inv(rot @ np.diag([sigma_x**2, sy**2]) @ rot.T)
    r = np.arange(size, dtype=np.float64) - size // 2
    xx, yy = np.meshgrid(r, r)
    q = 0.5 * (inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy)
    if shape == "gaussian":
        k = np.exp(-q)
    elif shape == "generalized":
        k = np.exp(-(q**beta))
    elif shape == "plateau":
        k = 1.0 / (1.0 + q**beta)
    else:
        raise SrEdgeError(f"unknown kernel shape {shape!r}")
    return k / k.sum()


def gaussian_kernel_1d(sigma: float, size: int | None = None) -> np.ndarray:
    """A 1-D Gaussian (odd size, default 2*ceil(3 sigma)+1) that sums to 1, float64."""
    if sigma <= 0:
        raise SrEdgeError(f"blur sigma must be positive, got {sigma}")
    size = size or 2 * math.ceil(3 * sigma) + 1
    r = np.arange(size, dtype=np.float64) - size // 2
    k = np.exp(-0.5 * (r / sigma) ** 2)
    return k / k.sum()


def _hwc(img: np.ndarray) -> np.ndarray:
    return img[..., None] if img.ndim == 2 else img


def _reflect_pad(x: np.ndarray, ry: int, rx: int) -> np.ndarray:
    """Mirror-pad H x W x C (symmetric: the edge pixel repeated, like MATLAB/OpenCV's
    BORDER_REFLECT); pads wider than the image are repeated mirrors."""
    return np.pad(x, ((ry, ry), (rx, rx), (0, 0)), mode="symmetric")


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    period = np.mod(idx, 2 * n)
    return np.where(period < n, period, 2 * n - 1 - period)


def convolve_separable(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``img`` (H x W [x C], float) blurred by the outer product of 1-D ``k`` with itself,
    mirrored borders; float32. Uses SciPy's C filter where SciPy is installed (the training
    extra has it), else numpy."""
    x = _hwc(np.asarray(img, np.float32))
    k32 = np.asarray(k, np.float32)
    try:
        from scipy.ndimage import correlate1d
    except ImportError:  # the deployment install: numpy only
        r = len(k) // 2
        pad = _reflect_pad(x, r, r)
        h, w = x.shape[:2]
        rows = np.zeros((h, pad.shape[1], x.shape[2]), np.float32)
        for i, wt in enumerate(k32):
            rows += wt * pad[i : i + h]
        out = np.zeros_like(x)
        for i, wt in enumerate(k32):
            out += wt * rows[:, i : i + w]
    else:  # scipy's "reflect" is the symmetric (edge-repeating) mirror, as _reflect_pad
        out = correlate1d(correlate1d(x, k32, axis=0, mode="reflect"), k32, axis=1, mode="reflect")
    return out.reshape(img.shape) if img.ndim == 2 else out


def convolve2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``img`` (H x W [x C], float) convolved with a 2-D ``kernel`` through the FFT, mirrored
    borders; float32 (a 21x21 kernel on a training patch costs about a millisecond)."""
    x = _hwc(np.asarray(img, np.float32))
    kh, kw = kernel.shape
    pad = np.moveaxis(_reflect_pad(x, kh // 2, kw // 2), -1, 0)  # C x H x W: contiguous transforms
    ph, pw = pad.shape[1:]
    try:
        import scipy.fft as fft

        size = (fft.next_fast_len(ph, real=True), fft.next_fast_len(pw, real=True))
    except ImportError:
        fft, size = np.fft, (ph, pw)
    spec = fft.rfft2(np.ascontiguousarray(pad), s=size)
    kspec = fft.rfft2(np.asarray(kernel[::-1, ::-1], np.float32), s=size)  # correlation: flipped kernel
    full = fft.irfft2(spec * kspec, s=size)
    h, w = x.shape[:2]
    out = np.ascontiguousarray(np.moveaxis(full[:, kh - 1 : kh - 1 + h, kw - 1 : kw - 1 + w], 0, -1), np.float32)
    return out.reshape(img.shape) if img.ndim == 2 else out


def resize(img: np.ndarray, shape: tuple[int, int], method: str) -> np.ndarray:
    """Float H x W x C resized to ``shape`` (h, w) by ``method``; float32.

    ``bicubic`` is MATLAB's antialiased ``imresize`` (the evaluation protocol's);
    ``bicubic-aliased`` the same kernel without antialiasing (a naive decimator);
    ``bilinear``, ``area`` (box) and ``lanczos`` are Pillow's antialiased resamplers.
    """
    x = _hwc(np.asarray(img, np.float32))
    if method == "bicubic":
        out = imresize(x, output_shape=shape)
    elif method == "bicubic-aliased":
        out = imresize(x, output_shape=shape, antialias=False)
    elif method in ("bilinear", "area", "lanczos"):
        from PIL import Image

        filt = {
            "bilinear": Image.Resampling.BILINEAR,
            "area": Image.Resampling.BOX,
            "lanczos": Image.Resampling.LANCZOS,
        }[method]
        size = (shape[1], shape[0])
        planes = [
            np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]), mode="F").resize(size, filt))
            for c in range(x.shape[2])
        ]
        out = np.stack(planes, axis=-1)
    else:
        raise SrEdgeError(f"unknown resize method {method!r}; use {', '.join(RESIZE_METHODS)}")
    return np.asarray(out, np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip float 0-255 values to uint8 (what storing the image does)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _luma(x: np.ndarray) -> np.ndarray:
    """Grey level of H x W x C (BT.601 weights; a grey image is itself), H x W x 1."""
    if x.shape[2] == 1:
        return x
    return (0.299 * x[..., :1] + 0.587 * x[..., 1:2] + 0.114 * x[..., 2:3]).astype(np.float32)


def gaussian_noise(x: np.ndarray, sigma: float, grey: bool, rng: np.random.Generator) -> np.ndarray:
    """``x`` (H x W x C, 0-255 float) plus zero-mean Gaussian noise of ``sigma`` grey levels;
    ``grey``: the same noise in every channel (luma noise), else independent (colour noise)."""
    h, w, c = x.shape
    n = rng.standard_normal((h, w, 1 if grey else c), dtype=np.float32) * np.float32(sigma)
    return x + n


def poisson_noise(x: np.ndarray, peak: float, grey: bool, rng: np.random.Generator) -> np.ndarray:
    """Shot noise: photon counts with ``peak`` photons at white (std sqrt(v * 255 / peak)
    grey levels at value v); ``grey``: the noise of the luma added to every channel."""
    if grey:
        luma = np.clip(_luma(x), 0, 255)
        noisy = rng.poisson(luma.astype(np.float64) * (peak / 255.0)) * (255.0 / peak)
        return x + (noisy - luma).astype(np.float32)
    noisy = rng.poisson(np.clip(x, 0, 255).astype(np.float64) * (peak / 255.0)) * (255.0 / peak)
    return noisy.astype(np.float32)


def jpeg(img: np.ndarray, quality: int, subsampling: Literal["4:2:0", "4:2:2", "4:4:4"] = "4:2:0") -> np.ndarray:
    """Encode ``img`` (uint8 H x W [x 1 or 3], or float: rounded first) as a JPEG at
    ``quality`` (1-100) with Pillow's libjpeg and decode it; uint8 of the same shape.

    ``subsampling`` of the chroma: 4:2:0 is Pillow's default and what phones and most
    encoders write (at quality 100 it still moves colour edges by tens of grey levels;
    4:4:4 stays within a few)."""
    from PIL import Image

    if not 1 <= int(quality) <= 100:
        raise SrEdgeError(f"JPEG quality must be in [1, 100], got {quality}")
    a = np.asarray(img)
    if a.dtype != np.uint8:
        if np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255:
            raise SrEdgeError("JPEG needs an 8-bit image; this one has values above 255 (16-bit?)")
        a = to_uint8(a.astype(np.float32))
    shape = a.shape
    a = _hwc(a)
    if a.shape[2] not in (1, 3):
        raise SrEdgeError(f"JPEG needs 1 or 3 channels, got {a.shape[2]}")
    pil = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=int(quality), subsampling=subsampling)
    buf.seek(0)
    with Image.open(buf) as decoded:
        out = np.asarray(decoded.convert(pil.mode))
    return out.reshape(shape)


# --- training: the random pipeline --------------------------------------------------------


Range = tuple[float, float]


class DegradationConfigError(SrEdgeError):
    """A degradation setting that is unknown or out of range; the message is one line."""


def _check_range(where: str, value: Range, lo: float, hi: float) -> None:
    if len(value) != 2 or not lo <= value[0] <= value[1] <= hi:
        raise DegradationConfigError(f"{where} must be [low, high] with {lo} <= low <= high <= {hi}, got {list(value)}")


def _check_prob(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise DegradationConfigError(f"{where} must be a probability in [0, 1], got {value}")


@dataclass(frozen=True)
class BlurConfig:
    """Blur before downsampling (``prob``); sigmas in LR pixels (x scale at HR)."""

    prob: float = 0.3
    sigma: Range = (0.2, 1.0)
    anisotropic_prob: float = 0.3  # else isotropic
    generalized_prob: float = 0.1  # of the kernels, generalised Gaussian ...
    plateau_prob: float = 0.1  # ... or plateau; the rest plain Gaussian
    beta_generalized: Range = (0.5, 4.0)
    beta_plateau: Range = (1.0, 2.0)

    def check(self, where: str) -> None:
        for name in ("prob", "anisotropic_prob", "generalized_prob", "plateau_prob"):
            _check_prob(f"{where}.{name}", getattr(self, name))
        if self.generalized_prob + self.plateau_prob > 1.0:
            raise DegradationConfigError(f"{where}.generalized_prob + plateau_prob must be <= 1")
        _check_range(f"{where}.sigma", self.sigma, 0.05, 5.0)
        _check_range(f"{where}.beta_generalized", self.beta_generalized, 0.2, 8.0)
        _check_range(f"{where}.beta_plateau", self.beta_plateau, 0.5, 4.0)


@dataclass(frozen=True)
class ResizeConfig:
    """The downsampling method, drawn with ``weights``."""

    methods: tuple[str, ...] = ("bicubic", "bilinear", "area", "lanczos")
    weights: tuple[float, ...] = (0.55, 0.15, 0.15, 0.15)

    def check(self, where: str) -> None:
        bad = [m for m in self.methods if m not in RESIZE_METHODS]
        if bad or not self.methods:
            raise DegradationConfigError(
                f"{where}.methods: unknown method(s) {bad} (known: {', '.join(RESIZE_METHODS)})"
                if bad
                else f"{where}.methods must name at least one method"
            )
        if len(self.weights) != len(self.methods) or any(w < 0 for w in self.weights) or sum(self.weights) <= 0:
            raise DegradationConfigError(
                f"{where}.weights must be {len(self.methods)} non-negative numbers (one per method), "
                f"got {list(self.weights)}"
            )


@dataclass(frozen=True)
class NoiseConfig:
    """Noise after downsampling (``prob``): Gaussian (sigma in grey levels) or, with
    ``poisson_prob``, Poisson (photons at white); grey (luma) with ``grey_prob``, else colour."""

    prob: float = 0.5
    gaussian_sigma: Range = (1.0, 10.0)
    poisson_prob: float = 0.3
    poisson_peak: Range = (300.0, 3000.0)
    grey_prob: float = 0.4

    def check(self, where: str) -> None:
        for name in ("prob", "poisson_prob", "grey_prob"):
            _check_prob(f"{where}.{name}", getattr(self, name))
        _check_range(f"{where}.gaussian_sigma", self.gaussian_sigma, 0.0, 50.0)
        _check_range(f"{where}.poisson_peak", self.poisson_peak, 10.0, 1e6)


@dataclass(frozen=True)
class JpegConfig:
    """JPEG compression last (``prob``) at a quality drawn uniformly from ``quality``."""

    prob: float = 0.7
    quality: tuple[int, int] = (30, 95)

    def check(self, where: str) -> None:
        _check_prob(f"{where}.prob", self.prob)
        _check_range(f"{where}.quality", self.quality, 1, 100)
        if any(float(q) != int(q) for q in self.quality):
            raise DegradationConfigError(f"{where}.quality must be whole numbers, got {list(self.quality)}")


@dataclass(frozen=True)
class SecondRound:
    """A second blur / resize / noise / JPEG round (``prob``): the first round then stops at
    ``intermediate`` x the LR size, and this round brings it to the LR size."""

    prob: float = 0.15
    intermediate: Range = (1.0, 1.5)
    blur: BlurConfig = field(default_factory=lambda: BlurConfig(prob=0.2, sigma=(0.2, 0.6)))
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig(prob=0.3, gaussian_sigma=(1.0, 5.0)))
    jpeg: JpegConfig = field(default_factory=lambda: JpegConfig(prob=0.5, quality=(50, 95)))

    def check(self, where: str) -> None:
        _check_prob(f"{where}.prob", self.prob)
        _check_range(f"{where}.intermediate", self.intermediate, 1.0, 4.0)
        self.blur.check(f"{where}.blur")
        self.noise.check(f"{where}.noise")
        self.jpeg.check(f"{where}.jpeg")


@dataclass(frozen=True)
class DegradationConfig:
    """The random training degradation (defaults: the ``realistic`` preset).

    With ``clean_prob`` a patch is the protocol's clean bicubic LR (so clean input is not
    forgotten); otherwise blur -> resize -> noise -> JPEG, then with ``second.prob`` a second
    such round. Validated on construction; :meth:`from_toml` reads a file of the same
    sections (``[blur]``, ``[resize]``, ``[noise]``, ``[jpeg]``, ``[second]``, ``[second.blur]`` ...),
    each key optional (its default), unknown keys an error.
    """

    clean_prob: float = 0.1
    blur: BlurConfig = field(default_factory=BlurConfig)
    resize: ResizeConfig = field(default_factory=ResizeConfig)
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    jpeg: JpegConfig = field(default_factory=JpegConfig)
    second: SecondRound = field(default_factory=SecondRound)

    def __post_init__(self) -> None:
        _check_prob("clean_prob", self.clean_prob)
        self.blur.check("blur")
        self.resize.check("resize")
        self.noise.check("noise")
        self.jpeg.check("jpeg")
        self.second.check("second")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> DegradationConfig:
        """Build from nested mappings (a TOML document or :meth:`to_json`); unknown keys and
        wrong types are :class:`DegradationConfigError` naming the key."""
        return _build(cls, d, "")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> DegradationConfig:
        """Load a degradation TOML file; every problem is one line naming the file and key."""
        p = Path(path)
        try:
            doc = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SrEdgeError(f"{p}: no such degradation file (use bicubic, realistic or a .toml file)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise SrEdgeError(f"{p}: cannot read degradation file ({one_line(str(e))})") from None
        except tomllib.TOMLDecodeError as e:
            raise SrEdgeError(f"{p}: not valid TOML ({one_line(str(e))})") from None
        try:
            return cls.from_mapping(doc)
        except DegradationConfigError as e:
            raise DegradationConfigError(f"{p}: {e}") from None


def _build(cls: type, d: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(d, Mapping):
        raise DegradationConfigError(f"{prefix.rstrip('.') or 'degradation'} must be a table, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        where = f" in [{prefix.rstrip('.')}]" if prefix else ""
        raise DegradationConfigError(
            f"unknown key(s) {', '.join(repr(k) for k in unknown)}{where} (known: {', '.join(fields)})"
        )
    kw: dict[str, Any] = {}
    defaults = cls()
    for name, value in d.items():
        default = getattr(defaults, name)
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(default):
            kw[name] = _build(type(default), value, f"{key}.")
        elif isinstance(default, tuple):
            if not isinstance(value, (list, tuple)):
                raise DegradationConfigError(f"{key} must be a list, got {value!r}")
            kinds = {type(v) for v in default} or {str}
            if str in kinds:
                if not all(isinstance(v, str) for v in value):
                    raise DegradationConfigError(f"{key} must be a list of names, got {list(value)}")
            elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                raise DegradationConfigError(f"{key} must be a list of numbers, got {list(value)}")
            kw[name] = tuple(value)
        elif isinstance(default, float):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DegradationConfigError(f"{key} must be a number, got {value!r}")
            kw[name] = float(value)
        else:  # pragma: no cover - every field is a table, a tuple or a float
            kw[name] = value
    # Sections are checked (with their full key names) when the top-level config is built.
    return cls(**kw)


def resolve_degradation(spec: str) -> DegradationConfig | None:
    """``bicubic`` -> None (the protocol's clean LR), ``realistic`` -> the preset, else a TOML file."""
    if spec == "bicubic":
        return None
    if spec == "realistic":
        return DegradationConfig()
    if spec.endswith(".toml") or Path(spec).is_file():
        return DegradationConfig.from_toml(spec)
    raise SrEdgeError(f"unknown degradation {spec!r}: use bicubic, realistic or a .toml file")


# the margin per side: the blur kernel's radius at HR, in LR pixels, plus the resamplers' support
RESAMPLE_SUPPORT = 3  # LR pixels: lanczos' 3 taps (bicubic 2, bilinear 1, area 1)


def _draw(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1])) if r[1] > r[0] else float(r[0])


def _random_kernel(cfg: BlurConfig, factor: float, rng: np.random.Generator) -> np.ndarray | None:
    """A random kernel for an image ``factor`` x the LR resolution (1-D: separable
    isotropic Gaussian), or None (no blur)."""
    if rng.random() >= cfg.prob:
        return None
    sx = _draw(rng, cfg.sigma) * factor
    aniso = bool(rng.random() < cfg.anisotropic_prob)
    sy = _draw(rng, cfg.sigma) * factor if aniso else sx
    angle = float(rng.uniform(0, math.pi)) if aniso else 0.0
    u = rng.random()
    if u < cfg.generalized_prob:
        shape, beta = "generalized", _draw(rng, cfg.beta_generalized)
    elif u < cfg.generalized_prob + cfg.plateau_prob:
        shape, beta = "plateau", _draw(rng, cfg.beta_plateau)
    else:
        shape, beta = "gaussian", 1.0
    size = max(3, min(MAX_KERNEL, 2 * math.ceil(3 * max(sx, sy)) + 1))
    if shape == "gaussian" and not aniso:
        return gaussian_kernel_1d(sx, size)
    return blur_kernel(size, sx, sy, angle, beta, shape)  # type: ignore[arg-type]


@dataclass(frozen=True)
class RoundPlan:
    """One drawn round: blur kernel (None: none), resampler, noise (kind, level, grey) and
    JPEG quality (None: none)."""

    kernel: np.ndarray | None
    method: str
    noise: tuple[str, float, bool] | None
    quality: int | None

    def apply(self, x: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, resized: bool) -> np.ndarray:
        """The round on float ``x``; ``resized``: ``x`` is already at ``shape`` (blur and resize done)."""
        if not resized:
            if self.kernel is not None:
                x = convolve_separable(x, self.kernel) if self.kernel.ndim == 1 else convolve2d(x, self.kernel)
            x = resize(x, shape, self.method)
        if self.noise is not None:
            kind, level, grey = self.noise
            x = gaussian_noise(x, level, grey, rng) if kind == "gaussian" else poisson_noise(x, level, grey, rng)
        if self.quality is not None:
            x = jpeg(to_uint8(x), self.quality).astype(np.float32)
        return x


def _plan_round(
    blur: BlurConfig, resize_cfg: ResizeConfig, noise: NoiseConfig, jpeg_cfg: JpegConfig, factor: float,
    rng: np.random.Generator,
) -> RoundPlan:  # fmt: skip
    kernel = _random_kernel(blur, factor, rng)
    w = np.asarray(resize_cfg.weights, np.float64)
    method = resize_cfg.methods[int(rng.choice(len(w), p=w / w.sum()))]
    drawn: tuple[str, float, bool] | None = None
    if rng.random() < noise.prob:
        grey = bool(rng.random() < noise.grey_prob)
        if rng.random() < noise.poisson_prob:
            drawn = ("poisson", _draw(rng, noise.poisson_peak), grey)
        else:
            drawn = ("gaussian", _draw(rng, noise.gaussian_sigma), grey)
    quality = int(rng.integers(jpeg_cfg.quality[0], jpeg_cfg.quality[1] + 1)) if rng.random() < jpeg_cfg.prob else None
    return RoundPlan(kernel, method, drawn, quality)


@dataclass(frozen=True)
class DegradationPlan:
    """Every random choice of one patch's degradation, drawn before any pixel is touched, so
    that a caller can fetch the right input first (:attr:`needs_hr`, :meth:`margin`)."""

    clean: bool
    first: RoundPlan
    second: RoundPlan | None
    intermediate: float  # the first round's output size / the LR size (1 without a second round)

    @property
    def needs_hr(self) -> bool:
        """Whether the first round must start from HR (a blur before downsampling, or a
        resize to an intermediate size); else it starts from the image downsampled by
        :attr:`first`'s ``method``, which a sampler can compute once per training image."""
        return not self.clean and (self.first.kernel is not None or self.intermediate != 1.0)

    def margin(self, scale: int) -> int:
        """LR pixels of context each side of a patch needs so that blur and resampling at its
        border see image, not padding (results inside the margin are cut away)."""
        radius = 0 if self.first.kernel is None else self.first.kernel.shape[0] // 2
        second = 0 if self.second is None or self.second.kernel is None else self.second.kernel.shape[0] // 2
        return math.ceil(radius / scale) + RESAMPLE_SUPPORT + second

    def apply(self, hr: np.ndarray, scale: int, rng: np.random.Generator) -> np.ndarray:
        """The LR (uint8, H/scale x W/scale x C) of uint8 ``hr`` (H x W [x C], multiples of ``scale``)."""
        img = _hwc(hr)
        h, w = img.shape[:2]
        if h % scale or w % scale:
            raise SrEdgeError(f"HR size {w}x{h} is not a multiple of the scale {scale}")
        lr_shape = (h // scale, w // scale)
        if self.clean:  # the protocol's LR: uint8 in, rounded per pass
            return imresize(hr, output_shape=lr_shape)
        return self._rounds(img.astype(np.float32), lr_shape, rng, resized=False).reshape(lr_shape + hr.shape[2:])

    def apply_downsampled(self, lr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """As :meth:`apply`, from the HR already downsampled by ``first.method`` to the LR
        size (the protocol's bicubic LR for a clean plan); only for a plan that does not
        :attr:`needs_hr`. Noise and JPEG are all that is left to do."""
        if self.needs_hr:
            raise ValueError("this plan blurs or resizes at HR; apply it to the HR image")
        if self.clean:
            return lr
        x = _hwc(lr).astype(np.float32)
        return self._rounds(x, x.shape[:2], rng, resized=True).reshape(lr.shape)

    def _rounds(self, x: np.ndarray, lr_shape: tuple[int, int], rng: np.random.Generator, resized: bool) -> np.ndarray:
        if self.second is None:
            return to_uint8(self.first.apply(x, lr_shape, rng, resized))
        mid = (max(1, round(lr_shape[0] * self.intermediate)), max(1, round(lr_shape[1] * self.intermediate)))
        x = self.first.apply(x, mid, rng, resized)
        return to_uint8(self.second.apply(x, lr_shape, rng, resized=False))


def plan_degradation(config: DegradationConfig, scale: int, rng: np.random.Generator) -> DegradationPlan:
    """Draw one patch's degradation from ``config`` (the noise values themselves are drawn
    from ``rng`` later, when the plan is applied)."""
    clean = bool(rng.random() < config.clean_prob)
    s = config.second
    two = bool(rng.random() < s.prob)
    u = _draw(rng, s.intermediate) if two else 1.0
    first = _plan_round(config.blur, config.resize, config.noise, config.jpeg, float(scale), rng)
    second = _plan_round(s.blur, config.resize, s.noise, s.jpeg, u, rng) if two else None
    return DegradationPlan(clean, first, second, u)


def realistic_lr(hr: np.ndarray, scale: int, config: DegradationConfig, rng: np.random.Generator) -> np.ndarray:
    """A random LR (uint8, H/scale x W/scale x C) of a uint8 HR (H x W x C, multiples of ``scale``).

    The same generator state gives the same LR (up to libjpeg's SIMD rounding on another CPU)."""
    return plan_degradation(config, scale, rng).apply(hr, scale, rng)


# --- evaluation: fixed operations on the protocol's LR -------------------------------------


@dataclass(frozen=True)
class Jpeg:
    """JPEG at ``quality`` through Pillow (4:2:0 chroma, Pillow's default)."""

    quality: int

    def __post_init__(self) -> None:
        if not 1 <= self.quality <= 100:
            raise SrEdgeError(f"jpeg quality must be in [1, 100], got {self.quality}")

    @property
    def name(self) -> str:
        return f"jpeg:{self.quality}"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return jpeg(to_uint8(x), self.quality).astype(np.float32)


@dataclass(frozen=True)
class Noise:
    """Gaussian noise of ``sigma`` grey levels (colour, or ``grey``: the same in every channel)."""

    sigma: float
    grey: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.sigma <= 100:
            raise SrEdgeError(f"noise sigma must be in [0, 100] grey levels, got {self.sigma}")

    @property
    def name(self) -> str:
        return f"noise{'-grey' if self.grey else ''}:{self.sigma:g}"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return gaussian_noise(x, self.sigma, self.grey, rng)


@dataclass(frozen=True)
class Poisson:
    """Poisson (shot) noise with ``peak`` photons at white."""

    peak: float
    grey: bool = False

    def __post_init__(self) -> None:
        if not 10 <= self.peak <= 1e6:
            raise SrEdgeError(f"poisson peak must be in [10, 1e6] photons, got {self.peak}")

    @property
    def name(self) -> str:
        return f"poisson{'-grey' if self.grey else ''}:{self.peak:g}"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return poisson_noise(x, self.peak, self.grey, rng)


@dataclass(frozen=True)
class Blur:
    """Gaussian blur of ``sigma`` LR pixels (``sigma_y`` and ``angle`` in degrees: anisotropic)."""

    sigma: float
    sigma_y: float | None = None
    angle: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.sigma <= 10 or (self.sigma_y is not None and not 0 < self.sigma_y <= 10):
            raise SrEdgeError(f"blur sigma must be in (0, 10] pixels, got {self.sigma}")

    @property
    def name(self) -> str:
        if self.sigma_y is None:
            return f"blur:{self.sigma:g}"
        return f"blur:{self.sigma:g}x{self.sigma_y:g}@{self.angle:g}"

    def apply(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.sigma_y is None or self.sigma_y == self.sigma:
            return convolve_separable(x, gaussian_kernel_1d(self.sigma))
        size = min(4 * MAX_KERNEL + 1, 2 * math.ceil(3 * max(self.sigma, self.sigma_y)) + 1)
        return convolve2d(x, blur_kernel(size, self.sigma, self.sigma_y, math.radians(self.angle)))


LrOp = Jpeg | Noise | Poisson | Blur
_OPS: dict[str, type] = {"jpeg": Jpeg, "noise": Noise, "poisson": Poisson, "blur": Blur}
DEGRADE_FORMS = (
    "jpeg:QUALITY, noise:SIGMA, noise-grey:SIGMA, poisson:PEAK, blur:SIGMA (joined with +), none, or a .toml file"
)


@dataclass(frozen=True)
class LrDegradation:
    """Fixed operations applied in order to an LR image; noise seeded per image."""

    ops: tuple[LrOp, ...]
    seed: int = 0

    @property
    def name(self) -> str:
        return "+".join(op.name for op in self.ops) or "none"

    def apply(self, lr: np.ndarray, key: str = "") -> np.ndarray:
        """``lr`` (uint8 H x W [x C]) degraded; ``key`` (the image's name) picks its noise,
        so an image gets the same noise in every run and whatever the dataset's order."""
        if not self.ops:
            return lr
        if lr.dtype != np.uint8:
            raise SrEdgeError(f"--degrade {self.name} works on 8-bit images; this one is {lr.dtype}")
        x = _hwc(lr).astype(np.float32)
        for i, op in enumerate(self.ops):
            rng = np.random.default_rng([self.seed, zlib.crc32(key.encode()), i])
            x = op.apply(x, rng)
        return to_uint8(x).reshape(lr.shape)


def _number(text: str, form: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SrEdgeError(f"--degrade {form!r}: {text!r} is not a number; forms: {DEGRADE_FORMS}") from None


def parse_degrade(spec: str, seed: int = 0) -> LrDegradation:
    """An evaluation degradation from ``jpeg:75``, ``noise:5``, ``blur:1.2``, ``jpeg:75+noise:5``,
    ``none`` or a TOML file (``seed = N`` and ``[[step]]`` tables with ``op`` and its fields)."""
    spec = spec.strip()
    if spec in ("none", "clean", ""):
        return LrDegradation((), seed)
    if spec.endswith(".toml"):
        return _degrade_toml(Path(spec), seed)
    ops: list[LrOp] = []
    for part in spec.split("+"):
        kind, sep, value = part.strip().partition(":")
        grey = kind.endswith("-grey")
        base = kind[: -len("-grey")] if grey else kind
        if not sep or base not in _OPS or (grey and base not in ("noise", "poisson")):
            raise SrEdgeError(f"unknown --degrade form {part.strip()!r}; use {DEGRADE_FORMS}")
        v = _number(value, part)
        if base == "jpeg":
            if v != int(v):
                raise SrEdgeError(f"--degrade {part!r}: JPEG quality must be a whole number")
            ops.append(Jpeg(int(v)))
        elif base == "noise":
            ops.append(Noise(v, grey))
        elif base == "poisson":
            ops.append(Poisson(v, grey))
        else:
            ops.append(Blur(v))
    return LrDegradation(tuple(ops), seed)


def _degrade_toml(path: Path, seed: int) -> LrDegradation:
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SrEdgeError(f"{path}: no such --degrade file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise SrEdgeError(f"{path}: cannot read --degrade file ({one_line(str(e))})") from None
    unknown = sorted(set(doc) - {"seed", "step"})
    if unknown:
        raise SrEdgeError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))} (known: seed, step)")
    steps = doc.get("step", [])
    if not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
        raise SrEdgeError(f"{path}: step must be [[step]] tables")
    ops: list[LrOp] = []
    for i, st in enumerate(steps):
        st = dict(st)
        kind = st.pop("op", None)
        if kind not in _OPS:
            raise SrEdgeError(f"{path}: step {i + 1}: op must be one of {', '.join(_OPS)}, got {kind!r}")
        cls = _OPS[kind]
        known = [f.name for f in dataclasses.fields(cls)]
        bad = sorted(set(st) - set(known))
        if bad:
            raise SrEdgeError(
                f"{path}: step {i + 1} ({kind}): unknown key(s) {', '.join(map(repr, bad))} (known: {', '.join(known)})"
            )
        try:
            ops.append(cls(**st))
        except SrEdgeError as e:
            raise SrEdgeError(f"{path}: step {i + 1}: {e}") from None
        except TypeError as e:
            raise SrEdgeError(f"{path}: step {i + 1} ({kind}): {one_line(str(e))}") from None
    file_seed = doc.get("seed", seed)
    if not isinstance(file_seed, int) or isinstance(file_seed, bool):
        raise SrEdgeError(f"{path}: seed must be an integer, got {file_seed!r}")
    return LrDegradation(tuple(ops), file_seed)
