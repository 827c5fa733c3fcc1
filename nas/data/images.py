"""Image files through Pillow: a header read (size, mode, colour; no pixels decoded), and the
one decoding every image goes through, for training and for prediction alike: EXIF orientation
applied, converted to 1 or 3 channels as torchvision's loader converts, the shorter side
resized to the input size (bilinear, as torchvision's Resize), then a centre crop."""

from __future__ import annotations

import errno
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# torchvision's ImageFolder extensions (JPEG, PNG, PPM/PGM, BMP, TIFF, WebP)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
# what a broken, truncated or hostile file raises in Pillow (bugs in nas raise anything else)
READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error,
               Image.DecompressionBombError, Image.DecompressionBombWarning)


class ImageReadError(Exception):
    """One file that cannot be used; `reason` says why in a few words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Header:
    """What an image file's header says, orientation applied."""

    width: int
    height: int
    mode: str
    colour: bool


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def reason_of(error: BaseException) -> str:
    """A few words on why a file could not be read."""
    if isinstance(error, ImageReadError):
        return error.reason
    if isinstance(error, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return f"over Pillow's decompression-bomb limit ({error})"
    if isinstance(error, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, FileNotFoundError):
        return "no such file (deleted, or a broken symbolic link)"
    if isinstance(error, OSError) and error.errno == errno.ELOOP:
        return "symbolic link loop"
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if "truncated" in text:
        return f"truncated ({text})"
    return f"corrupt ({type(error).__name__}: {text[:120]})"


def open_image(path: str | Path) -> Image.Image:
    """Image.open with decompression-bomb warnings raised as errors (both are refused)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path)
        except READ_ERRORS as e:
            raise ImageReadError(reason_of(e)) from None


def is_colour(image: Image.Image) -> bool:
    """Whether the image has colour: an RGB-like mode, or a palette that is not all grey."""
    mode = image.mode
    if mode in ("P", "PA"):
        palette = image.getpalette() or []
        rgb = np.asarray(palette, dtype=np.int16).reshape(-1, 3)
        return bool((rgb != rgb[:, :1]).any())
    return mode not in GRAY_MODES


def read_header(path: str | Path) -> Header:
    """Size (after EXIF orientation), mode and colour, from the header: no pixels decoded."""
    try:
        with open_image(path) as image:
            width, height = image.size
            if exif_orientation(image) in (5, 6, 7, 8):  # rotated by 90 degrees
                width, height = height, width
            return Header(width, height, image.mode, is_colour(image))
    except READ_ERRORS as e:
        raise ImageReadError(reason_of(e)) from None


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable). A PNG's EXIF may follow its
    pixels, and Pillow decodes the whole image to look: in a header read, only an EXIF chunk
    met before the pixels counts (decoding applies any orientation all the same)."""
    if image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        return int(image.getexif().get(0x0112, 1))
    except READ_ERRORS:
        return 1


def decode(path: str | Path, size: int, channels: int) -> np.ndarray:
    """uint8 [channels, size, size]: oriented, converted, shorter side resized, centre-cropped."""
    try:
        with open_image(path) as image:
            if image.format == "JPEG":  # decode at the smallest DCT scale still >= size
                image.draft("L" if channels == 1 else "RGB", (size, size))
            image = ImageOps.exif_transpose(image)
            image = resize_and_crop(to_channels(image, channels), size)
            pixels = np.array(image, dtype=np.uint8)  # a writable copy (torch.from_numpy)
    except READ_ERRORS as e:
        raise ImageReadError(reason_of(e)) from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def to_channels(image: Image.Image, channels: int) -> Image.Image:
    """'L' or 'RGB', as torchvision's loader converts; 16-bit greys scaled down, not clipped."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        values = np.asarray(image, dtype=np.float64)
        if image.mode != "I" or values.max() > 255:
            values = values / 257.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")
    return image.convert("L" if channels == 1 else "RGB")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side to `size` (bilinear, antialiased), then the central size x size square,
    with torchvision's Resize and CenterCrop arithmetic."""
    width, height = image.size
    if min(width, height) != size:
        if width <= height:
            width, height = size, int(size * height / width)
        else:
            width, height = int(size * width / height), size
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    if (width, height) != (size, size):
        image = image.crop((left, top, left + size, top + size))
    return image


__all__ = ["IMAGE_EXTENSIONS", "Header", "ImageReadError", "decode", "is_image_name",
           "open_image", "read_header", "reason_of"]
