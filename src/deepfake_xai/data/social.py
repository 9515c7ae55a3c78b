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
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image

from ..sets import SHARED_PLATFORMS
from . import layout


@dataclass(frozen=True)
class PlatformProfile:
    """How one platform re-encodes an upload."""

    name: str
    scale: float = 1.0  # relative resize factor (TrueFace: 1024 px originals)
    max_side: int | None = None  # absolute cap on the longer side, applied after ``scale``
    jpeg_quality: int = 85
    subsampling: str = "4:2:0"

    def as_dict(self) -> dict:
        return asdict(self)


# (resize factor, JPEG quality) of each platform, in SHARED_PLATFORMS order (Facebook, Telegram, Twitter)
DEFAULT_PROFILES: dict[str, PlatformProfile] = {
    name: PlatformProfile(name, scale=scale, jpeg_quality=quality)
    for name, (scale, quality) in zip(SHARED_PLATFORMS, ((720 / 1024, 72), (1.0, 87), (1.0, 82)))
}

_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def profile_from_config(name: str, overrides: dict | None = None) -> PlatformProfile:
    """The default profile of ``name`` with config ``overrides`` applied."""
    if name not in DEFAULT_PROFILES:
        raise ValueError(
            f"unknown platform {name!r}: expected one of {sorted(DEFAULT_PROFILES)}"
        )
    base = DEFAULT_PROFILES[name].as_dict()
    for key, value in (overrides or {}).items():
        if key not in base or key == "name":
            raise ValueError(f"unknown key {key!r} in the profile of platform {name!r}")
        base[key] = value
    return PlatformProfile(**base)


def share(image: Image.Image, profile: PlatformProfile) -> bytes:
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
    src: str | Path, dst: str | Path, profile: PlatformProfile, progress: bool = True
) -> list[Path]:
    """Apply a platform to every image below ``src``, mirroring the tree into ``dst``.

    Output names get the platform's TrueFace suffix (``_FB.jpg`` etc.). Returns the written paths.
    """
    from tqdm import tqdm

    from ..io import write_bytes

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in layout.IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(layout.IMAGE_EXTENSIONS)}) found below {src}")
    written = []
    for path in tqdm(files, desc=f"share on {profile.name}", disable=not progress, unit="img"):
        out = dst / path.relative_to(src).parent / _shared_file_name(path.stem, profile.name)
        with Image.open(path) as img:
            write_bytes(out, share(img, profile))
        written.append(out)
    return written


def _shared_file_name(stem: str, platform: str) -> str:
    if platform in layout.PLATFORM_SUFFIXES:
        return layout.shared_name(stem, platform)
    return f"{stem}_{platform}.jpg"


def iter_profiles(config: dict | None) -> Iterable[PlatformProfile]:
    """Profiles of all post-social platforms, with the config's overrides applied."""
    config = config or {}
    for name in layout.POST_PLATFORMS:
        yield profile_from_config(name, config.get(name))
