"""Social-platform simulator: what uploading an image to a platform and downloading it again does.

Platforms re-encode uploads: they shrink large images and re-compress them as JPEG with 4:2:0
chroma subsampling. These two steps are what erase most forensic traces of GAN images. The default
profiles are *modeled on* the platforms in TrueFace (Facebook shrinks the 1024 px images to 720 px
and compresses hardest; Telegram and Twitter keep the size and compress more gently). They are
plausible approximations, not measurements: set ``scale``/``max_side``/``jpeg_quality`` in the
config from your own measurements.

Real and fake copies always go through the same transform and end in the same format, so a
detector cannot win by telling PNG from JPEG.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path

from PIL import Image

from .. import names as known
from ..names import Platform
from . import layout

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def profile_from_config(name: str, overrides: dict | None = None) -> Platform:
    """The known platform ``name`` with config ``overrides`` (data.platforms.<name>) applied."""
    table = known.platforms({name: overrides} if overrides else None)
    if name not in table:
        raise ValueError(f"unknown platform {name!r}: expected one of {', '.join(table)}")
    return table[name]


def share(image: Image.Image, profile: Platform) -> bytes:
    """Return the JPEG bytes a user would download after posting ``image`` on the platform."""
    img = image.convert("RGB")
    w, h = img.size
    factor = profile.scale
    if profile.max_side is not None and max(w, h) * factor > profile.max_side:
        factor = profile.max_side / max(w, h)
    if abs(factor - 1.0) > 1e-9:
        size = (max(1, round(w * factor)), max(1, round(h * factor)))
        img = img.resize(size, Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(
        buf,
        format="JPEG",
        quality=int(profile.jpeg_quality),
        subsampling=_SUBSAMPLING[profile.subsampling],
        optimize=False,
    )
    return buf.getvalue()


def share_folder(
    src: str | Path, dst: str | Path, profile: Platform, progress: bool = True
) -> list[Path]:
    """Apply a platform to every image below ``src``, mirroring the tree into ``dst``.

    Output names get the platform's suffix and extension (``_FB.jpg`` etc.). Returns the written paths.
    """
    from ..io import write_bytes
    from ..progress import progress_bar

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in layout.IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(layout.IMAGE_EXTENSIONS)}) found below {src}")
    written = []
    for path in progress_bar(files, desc=f"share on {profile.name}", disable=not progress, unit="img"):
        out = dst / path.relative_to(src).parent / profile.shared_name(path.stem)
        with Image.open(path) as img:
            write_bytes(out, share(img, profile))
        written.append(out)
    return written


def iter_profiles(config: dict | None, names=None) -> Iterable[Platform]:
    """The platforms ``names`` (default: the synthetic set's), with the config's data.platforms applied."""
    table = known.platforms(config)
    for name in names if names is not None else known.source_platforms("synthetic"):
        if name not in table:
            raise ValueError(f"unknown platform {name!r}: expected one of {', '.join(table)} (or add it under "
                             "data.platforms)")
        yield table[name]
