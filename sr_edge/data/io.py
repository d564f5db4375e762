"""Image files in and out: PNG, JPEG, BMP, TIFF; 8- and 16-bit; grey, RGB, with alpha.

Images are numpy arrays H x W x C, C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA),
dtype uint8 or uint16 as stored in the file. Pillow silently reduces 16-bit colour PNG and
TIFF files to 8 bits, so those go through pypng / tifffile instead. Writing is atomic
(temp file + rename), so a failed write never leaves a half-written file in place of the
user's.

Very large outputs are written band by band (:func:`write_image_bands`): a PNG is encoded
as its rows arrive (:class:`PngBandWriter`), so the whole output never has to sit in memory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import struct
import warnings
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import SrEdgeError, one_line

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}
# What is read, by the format Pillow finds in the file (not by its suffix). MPO is Pillow's
# name for a camera JPEG that carries extra pictures (a preview, a depth map): the first is
# the photo. Anything else Pillow could open (GIF, WebP, ICO, PSD, ...) is refused by name:
# sr-edge is tested on these four only, and a GIF or WebP animation would silently lose
# all but its first frame.
_READ_FORMATS = {"PNG": "PNG", "JPEG": "JPEG", "MPO": "JPEG", "BMP": "BMP", "DIB": "BMP", "TIFF": "TIFF"}
# Pixels per image, at most: Pillow's own hard limit (twice its warning level, ~179 Mpx,
# e.g. 13000 x 13000), applied to every decoder here (16-bit PNG and TIFF too).
MAX_PIXELS = 2 * 89_478_485


def _check_path(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            target = os.readlink(path)
            raise SrEdgeError(f"{path}: a broken symbolic link (to {target}); fix it or pass the image") from None
        raise SrEdgeError(f"{path}: no such file") from None
    except OSError as e:  # a loop of symbolic links, a name too long, no permission on a folder above
        raise SrEdgeError(f"{path}: {e.strerror or e}; check the path") from None
    if stat.S_ISDIR(st.st_mode):
        raise SrEdgeError(f"{path}: is a directory, expected an image file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
        raise SrEdgeError(f"{path}: not a regular file, expected an image file")
    if st.st_size == 0:
        raise SrEdgeError(f"{path}: file is empty (0 bytes), not an image")


def _check_pixels(path: Path, width: int, height: int) -> None:
    """Refuse an image too large to decode before it is decoded (a decompression bomb: a
    small file whose header claims billions of pixels)."""
    if width * height > MAX_PIXELS:
        raise SrEdgeError(
            f"{path}: image is {width}x{height} ({width * height / 1e6:.0f} Mpx), over the limit of "
            f"{MAX_PIXELS / 1e6:.0f} Mpx per image (a decompression bomb, or a scan to split into parts first)"
        )


def _png_bit_depth(path: Path) -> int | None:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return head[24]
    return None


def _read_png16(path: Path) -> np.ndarray:
    import png  # pypng: a core dependency, pure Python

    with open(path, "rb") as f:
        head = f.read(24)
    _check_pixels(path, *struct.unpack(">II", head[16:24]))
    try:
        with open(path, "rb") as f:  # opened here: pypng's Reader(filename=) leaks its file when decoding fails
            width, height, rows, info = png.Reader(file=f).asDirect()
            data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
        data = data.reshape(height, width, info["planes"])
    except MemoryError:
        raise SrEdgeError(f"{path}: image is too large to decode in this machine's memory") from None
    except Exception as e:  # pypng raises its own errors, zlib.error, ValueError, ... for a damaged file
        raise SrEdgeError(f"{path}: truncated or corrupt PNG ({one_line(str(e)) or type(e).__name__})") from None
    return data


@contextlib.contextmanager
def _quiet_decoders() -> Iterator[None]:
    """Silence what the decoders say about a damaged file while they read it.

    Pillow warns (two lines each on stderr) of a corrupt EXIF block or a TIFF tag it skips,
    and of sizes between its warning and error levels (the limit here is MAX_PIXELS), and
    logs a TIFF it cannot decode; tifffile logs each damaged tag (as errors). The outcome
    of reading is an image or one line, never their chatter before it.
    """
    loggers = [logging.getLogger(name) for name in ("PIL", "tifffile")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL + 1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _from_pillow(path: Path) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with _quiet_decoders(), Image.open(path) as im:
            _check_format(path, im)
            _check_pixels(path, *im.size)
            im.load()
            if im.format == "TIFF" and _tiff_is_multichannel_16bit(im):
                return _read_tiff16(path)
            upright = ImageOps.exif_transpose(im) if im.format in ("JPEG", "MPO") else im
            return _pillow_to_array(path, upright)
    except SrEdgeError:
        raise
    except UnidentifiedImageError:
        if _is_tiff(path):  # e.g. 16-bit grey + alpha, which Pillow cannot open
            return _read_tiff16(path)
        raise SrEdgeError(f"{path}: not a readable image (expected PNG, JPEG, BMP or TIFF)") from None
    except Image.DecompressionBombError as e:
        raise SrEdgeError(f"{path}: image is too large to read safely ({one_line(str(e))})") from None
    except MemoryError:
        raise SrEdgeError(f"{path}: image is too large to decode in this machine's memory") from None
    except Exception as e:  # Pillow's decoders raise OSError, SyntaxError, struct.error, ... for a damaged file
        raise SrEdgeError(f"{path}: truncated or corrupt image ({one_line(str(e)) or type(e).__name__})") from None


def _check_format(path: Path, im: object) -> None:
    """Refuse what sr-edge does not read: another format, or an image of several frames
    (an animated PNG, a multi-page TIFF), whose first frame alone would be upscaled."""
    fmt = getattr(im, "format", None)
    if fmt not in _READ_FORMATS:
        raise SrEdgeError(
            f"{path}: a {fmt or 'unknown'} image; sr-edge reads PNG, JPEG, BMP and TIFF (convert it first)"
        )
    frames = int(getattr(im, "n_frames", 1) or 1)
    if frames > 1 and _READ_FORMATS[fmt] != "JPEG":
        kind = "an animated PNG" if fmt == "PNG" else f"a {fmt} file"
        raise SrEdgeError(
            f"{path}: {kind} of {frames} frames; sr-edge upscales single images (save each frame as its own file)"
        )


def _tiff_is_multichannel_16bit(im: object) -> bool:
    tags = getattr(im, "tag_v2", {})
    bits = tags.get(258)
    samples = tags.get(277, 1)
    if bits is None:
        return False
    first = bits[0] if isinstance(bits, tuple) else bits
    return int(first) == 16 and int(samples) > 1


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\x00", b"MM\x00*")


def _read_tiff16(path: Path) -> np.ndarray:
    try:
        import tifffile
    except ImportError:  # a core dependency; only a broken install lacks it
        raise SrEdgeError(f"{path}: 16-bit colour TIFF needs tifffile: pip install tifffile") from None
    try:
        with _quiet_decoders(), tifffile.TiffFile(str(path)) as tif:
            if len(tif.pages) > 1:
                raise SrEdgeError(
                    f"{path}: a TIFF file of {len(tif.pages)} pages; sr-edge upscales single images "
                    "(save each page as its own file)"
                )
            page = tif.pages[0]  # a TiffPage (the first page is never a TiffFrame)
            _check_pixels(path, int(getattr(page, "imagewidth")), int(getattr(page, "imagelength")))  # noqa: B009
            data = np.asarray(tif.asarray())
    except SrEdgeError:
        raise
    except MemoryError:
        raise SrEdgeError(f"{path}: image is too large to decode in this machine's memory") from None
    except Exception as e:  # tifffile raises many types for bad files
        raise SrEdgeError(f"{path}: truncated or corrupt TIFF ({one_line(str(e)) or type(e).__name__})") from None
    if data.ndim == 2:
        data = data[..., None]
    if data.dtype != np.uint16:
        raise SrEdgeError(f"{path}: unsupported TIFF sample type {data.dtype}; save as 8- or 16-bit")
    return data


def _pillow_to_array(path: Path, im: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    elif mode == "La":
        im = im.convert("LA")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(im).astype(np.uint16)
    elif im.mode == "I":
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise SrEdgeError(f"{path}: 32-bit integer pixels are not supported; save as 8- or 16-bit")
        arr = arr.astype(np.uint16)
    elif im.mode in ("L", "LA", "RGB", "RGBA"):
        arr = np.asarray(im)
    else:
        raise SrEdgeError(f"{path}: unsupported pixel format {im.mode!r}; save as 8- or 16-bit grey or RGB")
    if arr.ndim == 2:
        arr = arr[..., None]
    return np.ascontiguousarray(arr)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into an H x W x C uint8/uint16 array.

    Raises :class:`SrEdgeError` (one line) for a missing, empty, truncated, non-image or
    zero-size file.
    """
    p = Path(path)
    _check_path(p)
    arr = _read_png16(p) if _png_bit_depth(p) == 16 else _from_pillow(p)
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise SrEdgeError(f"{p}: image has no pixels ({arr.shape[1]}x{arr.shape[0]})")
    return arr


def split_alpha(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Split an H x W x C image into its colour channels (1 or 3) and its alpha (or None)."""
    if img.shape[-1] in (2, 4):
        return img[..., :-1], img[..., -1:]
    return img, None


def _write_png16(f: object, img: np.ndarray) -> None:
    import png

    h, w, c = img.shape
    writer = png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16)
    writer.write(f, img.reshape(h, w * c))


def check_out_folder(out: Path) -> None:
    """One-line error where a folder to be written at ``out`` cannot be: ``out`` or a folder
    above it is a file. Called before any work, so nothing is lost to a late refusal."""
    blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise SrEdgeError(f"--out {out}: {blocker} is a file, not a folder; choose another --out")


def write_image(path: str | os.PathLike[str], img: np.ndarray, quality: int = 95) -> Path:
    """Write an H x W x C uint8/uint16 array; the format follows the file suffix.

    The file appears atomically: on any error the previous file at ``path`` is untouched.
    """
    p = Path(path)
    if p.suffix.lower() not in IMAGE_SUFFIXES:
        raise SrEdgeError(f"{p}: unknown image suffix {p.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if img.ndim == 2:
        img = img[..., None]
    if img.ndim != 3 or img.shape[-1] not in (1, 2, 3, 4) or img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_image expects H x W x {{1,2,3,4}} uint8/uint16, got {img.shape} {img.dtype}")
    channels = img.shape[-1]
    suffix = _check_target(p, channels, img.dtype)

    from ..provenance import check_replaceable, naming, sweep_stale, temp_beside

    check_replaceable(p)
    sweep_stale(p)  # what a killed earlier write of it left
    tmp = temp_beside(p)
    try:
        with naming(p, tmp):  # a full disk or a refused write names the output, not the temp file
            _encode(tmp, img, suffix, quality)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 is not what a user expects of an image
            os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _encode(tmp: Path, img: np.ndarray, suffix: str, quality: int) -> None:
    """Encode ``img`` into the file ``tmp`` in the format of ``suffix``."""
    from PIL import Image

    channels = img.shape[-1]
    if img.dtype == np.uint16 and suffix == ".png":
        with open(tmp, "wb") as f:
            _write_png16(f, img)
    elif img.dtype == np.uint16:
        import tifffile

        tifffile.imwrite(
            tmp,
            img if channels > 1 else img[..., 0],
            photometric="rgb" if channels >= 3 else "minisblack",
            extrasamples=("unassalpha",) if channels in (2, 4) else None,
        )
    else:
        mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[channels]
        pil = Image.fromarray(img[..., 0] if channels == 1 else img, mode=mode)
        fmt = _FORMATS[suffix]
        pil.save(tmp, format=fmt, **({"quality": quality} if fmt == "JPEG" else {}))


_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type (grey, grey+alpha, RGB, RGBA)


class PngBandWriter:
    """A PNG encoder fed bands of rows top to bottom, holding only one band at a time.

    Pillow encodes a PNG from a whole image, and pypng's streaming writer leaves rows
    unfiltered, which made a 1024x1024 photo 1.9x the size Pillow writes; here every row
    gets the Paeth filter (computed for a whole band at once: it reads only unfiltered
    bytes) and the stream is deflated at zlib level 6, as Pillow does (same photo: 3% larger
    than Pillow's adaptive per-row filter choice).
    """

    def __init__(self, f: BinaryIO, width: int, height: int, channels: int, dtype: np.dtype, level: int = 6) -> None:
        if channels not in _PNG_COLOUR_TYPES or np.dtype(dtype) not in (np.uint8, np.uint16):
            raise ValueError(f"PNG stores 1-4 channels of uint8/uint16, got {channels} x {dtype}")
        if width < 1 or height < 1:
            raise ValueError(f"PNG needs at least one pixel, got {width}x{height}")
        self._f = f
        self.width, self.height, self.channels = width, height, channels
        self.dtype = np.dtype(dtype)
        depth = 8 * self.dtype.itemsize
        self._bpp = channels * self.dtype.itemsize  # bytes per pixel: the Paeth filter's "left" distance
        self._prev = np.zeros(width * self._bpp, np.uint8)  # the row above the first is zeros
        self._rows = 0
        self._zip = zlib.compressobj(level)
        f.write(_PNG_SIGNATURE)
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, _PNG_COLOUR_TYPES[channels], 0, 0, 0))

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self._f.write(struct.pack(">I", len(data)) + kind + data)
        self._f.write(struct.pack(">I", zlib.crc32(data, zlib.crc32(kind)) & 0xFFFFFFFF))

    def write(self, band: np.ndarray) -> None:
        """Append rows (k x width x channels, the writer's dtype)."""
        if band.ndim == 2:
            band = band[..., None]
        if band.shape[1:] != (self.width, self.channels) or band.dtype != self.dtype:
            raise ValueError(f"band of {band.shape} {band.dtype} does not fit a {self.width}-wide {self.dtype} PNG")
        if self._rows + band.shape[0] > self.height:
            raise ValueError(f"more rows than the PNG's height {self.height}")
        # filter a few MB at a time: the filter's int16 temporaries would otherwise be ~10x the band
        step = max(1, (4 << 20) // (self.width * self._bpp))
        for r in range(0, band.shape[0], step):
            self._write_rows(band[r : r + step])

    def _write_rows(self, band: np.ndarray) -> None:
        raw = np.ascontiguousarray(band, dtype=self.dtype.newbyteorder(">")).view(np.uint8)
        raw = raw.reshape(band.shape[0], -1)
        x = raw.astype(np.int16)
        up = np.empty_like(x)
        up[0] = self._prev
        up[1:] = x[:-1]
        left = np.zeros_like(x)
        left[:, self._bpp :] = x[:, : -self._bpp]
        upleft = np.zeros_like(x)
        upleft[:, self._bpp :] = up[:, : -self._bpp]
        # Paeth predictor (PNG spec 9.4): whichever of left, up, up-left is nearest to left + up - up-left
        pa, pb, pc = np.abs(up - upleft), np.abs(left - upleft), np.abs(left + up - 2 * upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
        filtered = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
        filtered[:, 0] = 4  # filter type Paeth
        np.subtract(x, pred, out=x)
        filtered[:, 1:] = x.astype(np.uint8)  # modulo 256, as the filter is defined
        self._prev = raw[-1].copy()
        self._rows += raw.shape[0]
        data = self._zip.compress(filtered.tobytes())
        if data:
            self._chunk(b"IDAT", data)

    def close(self) -> None:
        """Finish the stream (every row must have been written)."""
        if self._rows != self.height:
            raise ValueError(f"PNG got {self._rows} of its {self.height} rows")
        self._chunk(b"IDAT", self._zip.flush())
        self._chunk(b"IEND", b"")


def _check_target(p: Path, channels: int, dtype: np.dtype) -> str:
    """The target's lower-case suffix, after the one-line refusals write_image makes."""
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise SrEdgeError(f"{p}: unknown image suffix {p.suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}")
    if suffix in (".jpg", ".jpeg") and channels in (2, 4):
        raise SrEdgeError(f"{p}: JPEG cannot store an alpha channel; write .png or .tif instead")
    if suffix == ".bmp" and channels in (2, 4):
        raise SrEdgeError(f"{p}: sr-edge does not write alpha to BMP; write .png or .tif instead")
    if dtype == np.uint16 and suffix not in (".png", ".tif", ".tiff"):
        raise SrEdgeError(f"{p}: {suffix} cannot store 16-bit pixels; write .png or .tif to keep them")
    if not p.parent.exists():
        raise SrEdgeError(f"{p}: folder {p.parent} does not exist")
    return suffix


def write_image_bands(
    path: str | os.PathLike[str],
    height: int,
    width: int,
    channels: int,
    dtype: np.dtype,
    bands: Iterable[np.ndarray],
    quality: int = 95,
) -> Path:
    """Write an image that arrives as bands of rows, top to bottom, atomically.

    A PNG is encoded as the bands arrive (:class:`PngBandWriter`): memory holds one band,
    not the image. Other formats (their encoders take a whole image) are assembled into
    one array of the output's integer type, then written by :func:`write_image`.
    """
    p = Path(path)
    dtype = np.dtype(dtype)
    if _check_target(p, channels, dtype) != ".png":
        out = np.empty((height, width, channels), dtype)
        row = 0
        for band in bands:
            out[row : row + band.shape[0]] = band.reshape(band.shape[0], width, channels)
            row += band.shape[0]
        if row != height:
            raise ValueError(f"{p}: got {row} of {height} rows")
        return write_image(p, out, quality)

    from ..provenance import check_replaceable, naming, sweep_stale, temp_beside

    check_replaceable(p)
    sweep_stale(p)
    tmp = temp_beside(p)
    try:
        with naming(p, tmp), open(tmp, "wb") as f:
            writer = PngBandWriter(f, width, height, channels, dtype)
            for band in bands:
                writer.write(band)
            writer.close()
        with naming(p, tmp):
            os.chmod(tmp, 0o644)
            os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
