"""Reading image files safely: header inspection with integrity checks, and decoding to RGB.

Both the manifest builder and the cache builder go through here, so a file the manifest accepted
decodes the same way everywhere, and every rejection has a reason a person can act on.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# A TrueFace image is 1024 x 1024; anything above this many pixels is treated as a decompression bomb.
DEFAULT_MAX_PIXELS = 8192 * 8192


class BadImage(ValueError):
    """A file that is not a usable image; ``str(err)`` is the reason written to rejected.parquet."""


def inspect_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, full: bool = False) -> dict:
    """Header facts of one image (width, height, format, mode, bytes) or :class:`BadImage`.

    Cheap integrity checks run always (PNG chunk CRCs, JPEG end-of-image marker); ``full`` also
    decodes every pixel.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            raise BadImage("empty file (0 bytes)")
        with open(path, "rb") as fh:
            head = fh.read(16)
            fh.seek(max(0, size - 16))
            tail = fh.read()
    except PermissionError:
        raise BadImage("unreadable: permission denied") from None
    except OSError as err:
        raise BadImage(f"unreadable: {err.strerror or err}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as img:
                width, height = img.size
                fmt, mode = img.format, img.mode
                if width * height > max_pixels:
                    raise BadImage(
                        f"declared size {width}x{height} exceeds {max_pixels} pixels "
                        "(decompression bomb?)"
                    )
                if fmt == "PNG":
                    img.verify()
        except BadImage:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
            raise BadImage(f"decompression bomb: {err}") from None
        except UnidentifiedImageError:
            raise BadImage(f"not an image (starts with {head[:8]!r})") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise BadImage(f"corrupt {path.suffix.lstrip('.').upper() or 'image'}: {err}") from None
    if fmt == "JPEG" and b"\xff\xd9" not in tail.rstrip(b"\x00") and not _jpeg_ends(path):
        raise BadImage("truncated JPEG: no end-of-image marker")
    if full:
        try:
            load_rgb(path, max_pixels=max_pixels)
        except BadImage:
            raise
        except Exception as err:  # noqa: BLE001 - any decoder failure is a property of the file
            raise BadImage(f"cannot decode: {err}") from None
    return {"width": width, "height": height, "format": fmt, "mode": mode, "bytes": size}


def _jpeg_ends(path: Path) -> bool:
    """Whether the JPEG's image data ends with an end-of-image marker somewhere before the file does
    (data appended after the image, as some phones and platforms write). The segments before the
    first scan are skipped by their lengths, so an EXIF thumbnail's own marker does not count; inside
    scan data a 0xFF byte is always stuffed, so the next FF D9 is the image's end. A file cut short
    and padded (with zeros, say) has none: PIL would decode the padding as image data."""
    data = path.read_bytes()
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0xDA:  # start of scan: the image data follows
            return data.find(b"\xff\xd9", i) >= 0
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # markers without a length
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return False


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode to 8-bit RGB, converting grayscale, palette, RGBA (on black), CMYK and 16-bit."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as img:
            if img.size[0] * img.size[1] > max_pixels:
                raise BadImage(f"declared size {img.size[0]}x{img.size[1]} exceeds {max_pixels} pixels")
            img.load()
            mode = img.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(img, dtype=np.uint32)
                scale = 65535 if mode != "I" or arr.max() > 255 else 255
                arr8 = (arr * 255 // max(scale, 1)).astype(np.uint8)
                return Image.fromarray(arr8, mode="L").convert("RGB")
            if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                return Image.alpha_composite(bg, rgba).convert("RGB")
            return img.convert("RGB")


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """A uint8 RGB image encoded as JPEG at ``quality`` and decoded again (PIL): training's JPEG
    augmentation and the robustness curves' re-compression."""
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def is_hidden(path: Path) -> bool:
    return any(part.startswith(".") for part in path.parts)


def walk_files(root: Path) -> list[Path]:
    """All non-hidden files below ``root`` (relative paths), sorted; does not follow symlinks."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith("."):
                out.append(Path(dirpath, name).relative_to(root))
    return sorted(out)
