"""The TrueFace folder layout and file naming, shared by the generator and the ingestion code.

TrueFace (Boato et al., IJCB 2022) and TrueFake (Dell'Anna et al., IJCNN 2025)::

    TrueFace_PreSocial/Real/FFHQ/00000.png
    TrueFace_PreSocial/Fake/StyleGAN/images-psi-0.5/seed0000.png
    TrueFace_PreSocial/Fake/StyleGAN2/conf-f-psi-1/seed0000.png
    TrueFace_PostSocial/Facebook/Real/FFHQ/00000_FB.jpg
    TrueFace_PostSocial/Telegram/Fake/StyleGAN2/conf-f-psi-1/seed0000_TL.jpeg
    TrueFace_PostSocial/Twitter/...                                    _TW.jpg
    TrueFace_PostSocial/Whatsapp/...                                   _WA.jpeg

Some copies add a ``Train/`` or ``Test/`` level anywhere above the image folders. The platforms'
folders, suffixes and extensions, and the generators' folders, are data (``known/names.yaml``).
"""

from __future__ import annotations

import re

from ..names import Platform

PRESOCIAL_DIR = "TrueFace_PreSocial"
POSTSOCIAL_DIR = "TrueFace_PostSocial"
# The spellings of those two folders seen in copies (TrueFace_PreSocial, TrueFaces-Pre-Social, PreSocial).
PRE_DIR = re.compile(r"^(truefaces?[_\- ]?)?pre[_\- ]?social$", re.I)
POST_DIR = re.compile(r"^(truefaces?[_\- ]?)?post[_\- ]?social$", re.I)
# The synthetic set's generators: their TrueFace folder names.
GENERATOR_FOLDERS = {"ffhq": "FFHQ", "stylegan": "StyleGAN", "stylegan2": "StyleGAN2", "diffusion": "Diffusion",
                     "controlled": "Controlled"}
# Name of the sidecar file in which the synthetic generator records each fake's evidence region.
EVIDENCE_FILE = "evidence.csv"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def psi_folder(generator: str, psi: float) -> str:
    """The TrueFace folder name of one (generator, psi) group, e.g. ``conf-f-psi-1``."""
    if generator == "stylegan":
        return f"images-psi-{psi:g}"
    if generator == "stylegan2":
        return f"conf-f-psi-{psi:g}"
    if generator == "diffusion":
        return f"sampler-psi-{psi:g}"
    raise ValueError(f"unknown generator {generator!r}: expected stylegan, stylegan2 or diffusion")


def class_dir(generator: str, psi: float | None) -> str:
    """Relative folder of one class below a platform root: ``Real/FFHQ`` or ``Fake/<gen>/<psi>``."""
    if generator == "ffhq":
        return "Real/FFHQ"
    if generator == "controlled":
        return "Fake/Controlled/region"
    return f"Fake/{GENERATOR_FOLDERS[generator]}/{psi_folder(generator, psi)}"


def platform_root(platform: Platform | None) -> str:
    """The folder of the pre-social originals (None) or of one platform's copies."""
    if platform is None:
        return PRESOCIAL_DIR
    return f"{POSTSOCIAL_DIR}/{platform.folders[0]}"

