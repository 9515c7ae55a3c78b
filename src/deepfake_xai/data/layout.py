"""The TrueFace folder layout and file naming, shared by the generator and the ingestion code.

TrueFace (Boato et al., IJCB 2022)::

    TrueFace_PreSocial/Real/FFHQ/00000.png
    TrueFace_PreSocial/Fake/StyleGAN/images-psi-0.5/seed0000.png
    TrueFace_PreSocial/Fake/StyleGAN2/conf-f-psi-1/seed0000.png
    TrueFace_PostSocial/Facebook/Real/FFHQ/00000_FB.jpg
    TrueFace_PostSocial/Telegram/Fake/StyleGAN2/conf-f-psi-1/seed0000_TL.jpeg
    TrueFace_PostSocial/Twitter/...                                    _TW.jpg

Some copies add a ``Train/`` or ``Test/`` level anywhere above the image folders.
"""

from __future__ import annotations

from ..sets import PARTS, PRESOCIAL, SHARED_PLATFORMS

PRESOCIAL_DIR = "TrueFace_PreSocial"
POSTSOCIAL_DIR = "TrueFace_PostSocial"
PLATFORM_PARTS = PARTS
POST_PLATFORMS = SHARED_PLATFORMS
# TrueFace's folder, file-name suffix and extension of each platform's copies, in SHARED_PLATFORMS order
PLATFORM_FOLDERS = dict(zip(SHARED_PLATFORMS, ("Facebook", "Telegram", "Twitter")))
PLATFORM_SUFFIXES = dict(zip(SHARED_PLATFORMS, ("_FB", "_TL", "_TW")))
PLATFORM_EXTENSIONS = dict(zip(SHARED_PLATFORMS, (".jpg", ".jpeg", ".jpg")))
GENERATOR_FOLDERS = {"ffhq": "FFHQ", "stylegan": "StyleGAN", "stylegan2": "StyleGAN2"}
# Name of the sidecar file in which the synthetic generator records each fake's evidence region.
EVIDENCE_FILE = "evidence.csv"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def psi_folder(generator: str, psi: float) -> str:
    """The TrueFace folder name of one (generator, psi) group, e.g. ``conf-f-psi-1``."""
    if generator == "stylegan":
        return f"images-psi-{psi:g}"
    if generator == "stylegan2":
        return f"conf-f-psi-{psi:g}"
    raise ValueError(f"unknown generator {generator!r}: expected stylegan or stylegan2")


def class_dir(generator: str, psi: float | None) -> str:
    """Relative folder of one class below a platform root: ``Real/FFHQ`` or ``Fake/<gen>/<psi>``."""
    if generator == "ffhq":
        return "Real/FFHQ"
    return f"Fake/{GENERATOR_FOLDERS[generator]}/{psi_folder(generator, psi)}"


def platform_root(platform: str) -> str:
    if platform == PRESOCIAL:
        return PRESOCIAL_DIR
    return f"{POSTSOCIAL_DIR}/{PLATFORM_FOLDERS[platform]}"


def shared_name(stem: str, platform: str) -> str:
    """File name of a shared copy of the pre-social image ``stem`` on ``platform``."""
    return f"{stem}{PLATFORM_SUFFIXES[platform]}{PLATFORM_EXTENSIONS[platform]}"
