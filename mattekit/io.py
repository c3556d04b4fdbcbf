"""Reading images and writing results.

Every reader returns arrays in one convention so that the rest of mattekit never looks at file
formats: images are float32 RGB in [0, 1] with shape (H, W, 3), single-channel data is float32 in
[0, 1] with shape (H, W).  EXIF orientation is applied to everything read, so an image and its trimap
line up whichever camera wrote them.  Writers never leave a half-written file behind: they write a
temporary file in the destination folder and rename it into place.

OpenCV is imported only for what Pillow cannot do (16-bit colour files): it costs about 40 MB of
resident memory and a tenth of a second, which a one-photo ``mattekit predict`` would feel.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from mattekit.errors import MattekitError, user_errors

#: Refuse images with more pixels than this unless the caller raises it (6000x6000 is 36 MP).
DEFAULT_MAX_PIXELS = 150_000_000

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: The EXIF tag that says how a camera held the picture (1 = as stored).
EXIF_ORIENTATION = 0x0112

# PIL decodes these formats, but drops 16-bit colour to 8 bits; OpenCV keeps all 16.
_SIXTEEN_BIT_RAWMODES = ("RGB;16B", "RGBA;16B", "RGB;16L", "RGBA;16L", "RGB;16N", "RGBA;16N")

# 8-bit modes OpenCV decodes to the same RGB as Pillow (an alpha channel dropped).
_RGB8_MODES = ("RGB", "RGBA", "L", "LA")

#: What every reader accepts: a path, a PIL image or a numpy array.
ImageLike = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]

# mattekit enforces its own, configurable pixel limit (max_pixels) before decoding.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class Decoded:
    """Pixels of one source: ``color`` (H, W, C) float32 in [0, 1] with C in {1, 3}, the source's own
    alpha channel (H, W) when it has one, and ``levels``, the largest code of the source's integer type
    (255, 65535) or 1 for float sources, so that ``color * levels`` gives back the stored integers."""

    color: np.ndarray
    alpha: np.ndarray | None
    levels: int


def _orient(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation tag (1..8) to an (H, W, ...) array."""
    ops: dict[int, Callable[[np.ndarray], np.ndarray]] = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: a.swapaxes(0, 1)[:, ::-1],
        7: lambda a: a.swapaxes(0, 1)[::-1, ::-1],
        8: lambda a: a.swapaxes(0, 1)[::-1],
    }
    op = ops.get(orientation)
    return np.ascontiguousarray(op(array)) if op else array


def _levels(dtype: np.dtype) -> int:
    """The code of full intensity for a pixel type (PIL's 32-bit "I" mode holds 16-bit PNGs)."""
    if dtype == np.uint8:
        return 255
    return 65535 if np.issubdtype(dtype, np.integer) else 1


def _split(pixels: np.ndarray, clip: bool = True) -> Decoded:
    """(H, W) or (H, W, 1..4) pixels of any type into unit-range colour and optional alpha (``clip=False``
    keeps float values outside [0, 1], which a float label map holds)."""
    levels = _levels(pixels.dtype)
    unit = pixels.astype(np.float32) / levels
    if clip:
        unit = np.clip(unit, 0.0, 1.0)
    if unit.ndim == 2:
        return Decoded(unit[..., None], None, levels)
    channels = unit.shape[2]
    if channels in (2, 4):
        return Decoded(unit[..., : channels - 1], unit[..., channels - 1], levels)
    return Decoded(unit, None, levels)


def _pil_pixels(im: Image.Image) -> np.ndarray:
    """Pixels of a PIL image with the colour model flattened to L, LA, RGB or RGBA."""
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode == "PA":
        im = im.convert("RGBA")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif im.mode == "1":
        im = im.convert("L")
    elif im.mode == "La":
        im = im.convert("LA")
    elif im.mode == "RGBa":
        im = im.convert("RGBA")
    return np.asarray(im)


def describe_pixels(count: int) -> str:
    """A pixel count as people read it: ``36.0 MP``, or the plain count under a megapixel."""
    return f"{count / 1e6:.1f} MP" if count >= 1_000_000 else f"{count:,} pixels"


def check_pixels(path: Path, width: int, height: int, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels, from its header, before it is decoded."""
    if width * height > max_pixels:
        raise MattekitError(
            f"{path}: {width}x{height} is {describe_pixels(width * height)}, over the limit of "
            f"{describe_pixels(max_pixels)} (raise it with --max-pixels)"
        )


def check_regular_file(path: Path, what: str = "an image") -> None:
    """A one-line error unless ``path`` is a regular file: a FIFO or a device would block or never end."""
    with user_errors("cannot read", path):
        mode = path.stat().st_mode
    if stat.S_ISDIR(mode):
        raise MattekitError(f"{path}: is a folder, not {what}")
    if not stat.S_ISREG(mode):
        raise MattekitError(f"{path}: not a regular file (a pipe, device or socket); give {what} file")


def image_size(path: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file as mattekit reads it (EXIF rotation applied), from its header
    only, after the checks every read makes (regular file, readable, at most ``max_pixels``)."""
    path = Path(path)
    check_regular_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            check_pixels(path, width, height, max_pixels)
            if im.getexif().get(EXIF_ORIENTATION, 1) in (5, 6, 7, 8):
                width, height = height, width
    except MattekitError:
        raise
    except Exception as err:
        raise _decode_error(path, err) from None
    return width, height


def _decode_error(path: Path, err: BaseException) -> MattekitError:
    """The one-line error for a file PIL or OpenCV could not read."""
    if isinstance(err, UnidentifiedImageError):
        return MattekitError(f"{path}: not an image file, or a format mattekit cannot read")
    if isinstance(err, OSError) and err.errno is not None:
        return MattekitError(f"cannot read {path}: {os.strerror(err.errno).lower()}")
    # Decoders of crafted files raise many types (struct.error, IndexError, KeyError, ... from PIL's TIFF
    # and EXIF readers): whatever it is, the file is what could not be decoded.
    detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return MattekitError(f"{path}: cannot decode ({detail}); the file may be truncated or corrupt")


def _decode_file(path: Path, max_pixels: int, clip: bool = True) -> Decoded:
    return _split(_file_pixels(path, max_pixels), clip)


def _file_pixels(path: Path, max_pixels: int, rgb8: bool = False) -> np.ndarray:
    """The stored pixels of a file (its own integer type, EXIF orientation applied), after the checks;
    with ``rgb8``, 8-bit PNG and JPEG files come as RGB uint8 straight from OpenCV's decoders (about
    twice as fast as Pillow's on the training photos measured, and no Pillow decode to find a PNG's EXIF
    orientation)."""
    check_regular_file(path)
    try:
        with Image.open(path) as im:
            width, height = im.size
            check_pixels(path, width, height, max_pixels)
            # Read the raw mode first: getexif() may decode a PNG, which clears its tiles.
            rawmode = im.tile[0].args if im.tile and isinstance(im.tile[0].args, str) else ""
            sixteen = rawmode in _SIXTEEN_BIT_RAWMODES
            if rgb8 and not sixteen and im.format in ("PNG", "JPEG") and im.mode in _RGB8_MODES:
                pixels = _decode_rgb8_with_opencv(path)
                if pixels is not None:  # before getexif(), which would decode a PNG with Pillow too
                    return pixels
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            if sixteen:
                pixels = _decode_with_opencv(path)
            else:
                im.load()
                pixels = _pil_pixels(im)
    except MattekitError:
        raise
    except MemoryError:
        raise
    except Exception as err:
        raise _decode_error(path, err) from None
    return _orient(pixels, orientation)


def _decode_rgb8_with_opencv(path: Path) -> np.ndarray | None:
    """An 8-bit PNG or JPEG as RGB uint8, its EXIF orientation applied by OpenCV (as :func:`_orient` does,
    tested), or None if OpenCV cannot decode it (Pillow then reads it, and reports a bad file)."""
    import cv2

    return cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)


def _decode_with_opencv(path: Path) -> np.ndarray:
    """16-bit colour files, as RGB(A) uint16."""
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise MattekitError(f"{path}: cannot decode 16-bit image; the file may be truncated or corrupt")
    code = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(pixels, code)


def decode(source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS, clip: bool = True) -> Decoded:
    """Decode a path, PIL image or numpy array into unit-range colour and optional alpha.

    Numpy arrays are taken as they are (uint8, uint16 or float in [0, 1]; (H, W) or (H, W, C) with C in
    1..4); PIL images have their EXIF orientation applied like files.  ``clip=False`` keeps float values
    outside [0, 1].
    """
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or (source.ndim == 3 and source.shape[2] not in (1, 2, 3, 4)):
            raise MattekitError(f"array of shape {source.shape} is not an image (expected HxW or HxWxC)")
        return _split(source, clip)
    if isinstance(source, Image.Image):
        orientation = source.getexif().get(EXIF_ORIENTATION, 1)
        return _split(_orient(_pil_pixels(source), orientation), clip)
    if isinstance(source, (str, os.PathLike)):
        return _decode_file(Path(source), max_pixels, clip)
    raise MattekitError(f"cannot read an image from a {type(source).__name__}")


def read_uint8_channel(path: Path, max_pixels: int, modes: tuple[str, ...]) -> np.ndarray | None:
    """Channel 1 (grey levels, for a palette) of an 8-bit file in one of ``modes`` (PIL mode names) with
    no EXIF rotation, straight from the decoder and without the float conversion of :func:`decode`; None
    for anything else, which :func:`decode` handles (and reports, if the file is bad).  Scoring uses it:
    it saves a third of the time of an 800x550 case, and gigabytes of fresh memory at 6000x6000."""
    if not Path(path).is_file():  # a pipe would block here; decode() reports what it is
        return None
    try:
        with Image.open(path) as im:
            plain = im.mode in modes and im.width * im.height <= max_pixels
            if not plain or im.getexif().get(EXIF_ORIENTATION, 1) != 1:
                return None
            return np.asarray(im.convert("L") if im.mode == "P" else im.getchannel(0))
    except (OSError, SyntaxError, ValueError):
        return None


def read_image(
    source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.ndarray | None]:
    """An RGB image as float32 (H, W, 3) in [0, 1], and its own alpha channel (H, W) if it has one.

    Grey images are repeated to three channels; palette, CMYK and 16-bit files are converted.
    """
    decoded = decode(source, max_pixels)
    color = decoded.color
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    return np.ascontiguousarray(color, dtype=np.float32), decoded.alpha


def read_image_uint8(source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """An RGB image as uint8 (H, W, 3), an 8-bit file's codes as stored (no float conversion); other
    sources are rounded to 8 bits, grey is repeated to three channels and an alpha channel is dropped.

    For the training data chain, which keeps colours in 8 bits until composition (a quarter of the bytes
    of float32 through every resize and warp; the official GCA generator reads 8-bit images too).
    """
    is_path = isinstance(source, (str, os.PathLike))
    pixels = _file_pixels(Path(source), max_pixels, rgb8=True) if is_path else None  # type: ignore[arg-type]
    if pixels is None or pixels.dtype != np.uint8:
        color = read_image(source if pixels is None else pixels, max_pixels)[0]
        return np.rint(color * 255).astype(np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    color = pixels[..., :3] if pixels.shape[2] >= 3 else pixels[..., :1]
    if color.shape[2] == 1:
        color = np.repeat(color, 3, axis=2)
    return np.ascontiguousarray(color)


def read_gray(source: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A single-channel map as float32 (H, W) in [0, 1]: colour is reduced to luma (ITU-R 601, as
    OpenCV and PIL do), and an alpha channel is ignored."""
    color = decode(source, max_pixels).color
    if color.shape[2] == 1:
        return color[..., 0]
    return (color @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)


#: Temporary files of :func:`atomic_save`: ``.<name>.<pid>.<random>.part`` beside the file they become.
_PART = re.compile(r"^\..+\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.part$")
_cleaned: set[Path] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def clean_stale_parts(folder: Path) -> list[Path]:
    """Delete temporary files that a killed mattekit run left in ``folder`` (their process is gone), once
    per folder and process; returns what was deleted.  Only mattekit's own naming is touched."""
    folder = folder.resolve()
    if folder in _cleaned or not folder.is_dir():
        return []
    _cleaned.add(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    for entry in entries:
        match = _PART.match(entry.name)
        if match is None or int(match["pid"]) == os.getpid() or _alive(int(match["pid"])):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # someone else cleaned it, or it is not ours to delete
    return removed


def atomic_save(path: Path, save: Callable[[Path], None]) -> None:
    """Run ``save`` on a temporary name beside ``path``, then rename it into place; an existing file is
    only ever replaced whole.  OS refusals (permissions, a full disk, a folder in the way) become a
    one-line :class:`MattekitError` naming ``path``."""
    with user_errors("cannot write", path):
        if path.is_dir():
            raise MattekitError(f"cannot write {path}: a folder of that name is in the way")
        path.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_parts(path.parent)
        prefix = f".{path.name}.{os.getpid()}."
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            save(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the permissions open() would
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def same_file(first: Path | None, second: Path | None) -> bool:
    """True when both name one existing file (links and other spellings included)."""
    if first is None or second is None:
        return False
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def check_writable_folders(outputs: Iterable[Path]) -> None:
    """A one-line error, before any work, for an output folder that cannot be made or written: a file in
    its path, or no write permission where it is (or would be) created."""
    for folder in {Path(path).parent for path in outputs}:
        existing = folder
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            raise MattekitError(f"cannot write into {folder}: {existing} is a file, not a folder")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise MattekitError(f"cannot write into {folder}: permission denied")


def refuse_overwrite(inputs: Iterable[Path | None], outputs: Iterable[Path]) -> None:
    """A one-line error if an output is one of the inputs (same file by device and inode, so links and
    other spellings of a path count), checked before any work."""
    identities: dict[tuple[int, int], Path] = {}
    for path in inputs:
        if path is not None:
            try:
                info = os.stat(path)
            except OSError:
                continue  # a missing input is reported when it is read
            identities.setdefault((info.st_dev, info.st_ino), Path(path))
    for output in outputs:
        try:
            info = os.stat(output)
        except OSError:
            continue  # not there yet: cannot be an input
        same = identities.get((info.st_dev, info.st_ino))
        if same is not None:
            raise MattekitError(
                f"{output}: is the input {same}; mattekit never overwrites an input, choose another output"
            )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def to_integer(array: np.ndarray, bit_depth: int) -> np.ndarray:
    """Unit-range values as 8- or 16-bit codes, clipped and rounded half to even (how PNGs are written)."""
    if bit_depth not in (8, 16):
        raise MattekitError(f"--bit-depth must be 8 or 16, not {bit_depth}")
    top = 255 if bit_depth == 8 else 65535
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    return np.rint(np.clip(array, 0.0, 1.0) * top).astype(dtype)


#: zlib level of written PNGs: the fastest, as OpenCV's default (larger levels save ~10% for 2-5x the time).
PNG_COMPRESSION = 1


def write_png(path: str | os.PathLike[str], array: np.ndarray, bit_depth: int = 8) -> Path:
    """Write a unit-range (H, W), (H, W, 3) or (H, W, 4) array as a PNG, atomically; a uint8 array is
    taken as 8-bit codes already (no float copy of a trimap)."""
    path = Path(path)
    if array.dtype == np.uint8:
        pixels = array if bit_depth == 8 else array.astype(np.uint16) * np.uint16(257)
    else:
        pixels = to_integer(array, bit_depth)
    if pixels.ndim == 3 and bit_depth == 16:
        save = _opencv_png(path, pixels)  # Pillow writes no 16-bit colour PNG
    else:
        picture = Image.fromarray(pixels)

        def save(tmp: Path) -> None:
            picture.save(tmp, format="PNG", compress_level=PNG_COMPRESSION)

    atomic_save(path, save)
    return path


def _opencv_png(path: Path, pixels: np.ndarray) -> Callable[[Path], None]:
    import cv2

    bgr = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)

    def save(tmp: Path) -> None:
        ok, encoded = cv2.imencode(".png", bgr)
        if not ok:
            raise MattekitError(f"{path}: PNG encoding failed")
        encoded.tofile(tmp)

    return save


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name (hidden and temporary files skipped)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
