"""Platforms and generators as data: the defaults in ``names/data/known.yaml`` (TrueFace's and TrueFake's
folder names, suffixes and families) with a config's ``data.platforms`` / ``data.generators``
entries laid over them. The manifest reads folders through these tables, the simulator shares
through the platforms' profiles, and the set names (one part per platform) follow from them.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from functools import cache
from pathlib import Path

PLATFORM_KEYS = ("folders", "suffix", "extension", "scale", "max_side", "jpeg_quality", "subsampling")
GENERATOR_KEYS = ("folders", "family")
FAMILIES = ("real", "gan", "diffusion", "other")
SOURCES = ("synthetic", "trueface", "truefake", "folders", "csv")
# Part and generator names become path parts and set names: one safe word each.
NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Platform:
    """One social platform: how its copies are named and how the simulator re-encodes an upload."""

    name: str
    folders: tuple[str, ...]
    suffix: str = ""
    extension: str = ".jpg"
    scale: float = 1.0  # relative resize factor (TrueFace: 1024 px originals)
    max_side: int | None = None  # absolute cap on the longer side, applied after ``scale``
    jpeg_quality: int = 85
    subsampling: str = "4:2:0"

    def profile(self) -> dict:
        """The simulator's settings (what sharing does to an image), without the naming."""
        return {k: v for k, v in asdict(self).items() if k in ("scale", "max_side", "jpeg_quality", "subsampling")}

    def shared_name(self, stem: str) -> str:
        """File name of a shared copy of the pre-social image ``stem``."""
        return f"{stem}{self.suffix}{self.extension}"


@dataclass(frozen=True)
class Generator:
    name: str
    folders: tuple[str, ...]
    family: str


@cache
def _defaults() -> dict:
    import yaml

    with open(Path(__file__).with_name("data") / "known.yaml") as fh:
        return yaml.safe_load(fh)


def _merged(kind: str, overrides: dict | None, keys: tuple[str, ...]) -> dict[str, dict]:
    table = {name: dict(entry) for name, entry in _defaults()[kind].items()}
    for name, entry in (overrides or {}).items():
        where = f"data.{kind}.{name}"
        if not NAME.match(str(name)):
            raise ValueError(f"{where}: a name must be lower-case letters, digits and '_' (it names a set or a "
                             "column value), e.g. whatsapp")
        unknown = sorted(set(entry or {}) - set(keys))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; expected any of {', '.join(keys)}")
        if name not in table and not (entry or {}).get("folders"):
            raise ValueError(f"{where}: {name!r} is not a known {kind[:-1]}; a new one needs `folders:` (the folder "
                             f"names its images lie in), e.g. {name}: {{folders: [{name.title()}]}}")
        table.setdefault(name, {}).update(entry or {})
    return table


def platforms(overrides: dict | None = None) -> dict[str, Platform]:
    """Every known platform (defaults + ``data.platforms``), by name."""
    out = {}
    for name, entry in _merged("platforms", overrides, PLATFORM_KEYS).items():
        entry = {k: v for k, v in entry.items() if k in {f.name for f in fields(Platform)}}
        out[name] = Platform(name=name, **{**entry, "folders": tuple(entry["folders"])})
    return out


def generators(overrides: dict | None = None) -> dict[str, Generator]:
    """Every known generator and real source (defaults + ``data.generators``), by name."""
    out = {}
    for name, entry in _merged("generators", overrides, GENERATOR_KEYS).items():
        family = entry.get("family", "other")
        if family not in FAMILIES:
            raise ValueError(f"data.generators.{name}.family: {family!r} is not one of {', '.join(FAMILIES)}")
        out[name] = Generator(name=name, folders=tuple(entry["folders"]), family=family)
    return out


def by_folder(table: dict) -> dict[str, str]:
    """Folder name (lower case) -> entry name; a folder claimed by two entries is an error."""
    out: dict[str, str] = {}
    for name, entry in table.items():
        for folder in entry.folders:
            key = folder.lower()
            if out.get(key, name) != name:
                raise ValueError(f"the folder name {folder!r} is claimed by both {out[key]!r} and {name!r} "
                                 "(data.platforms / data.generators): give it to one of them")
            out[key] = name
    return out


def source_platforms(source: str) -> list[str]:
    """The platforms of a source's published layout (no shared copies for folders and csv)."""
    return list(_defaults()["source_platforms"].get(source, []))


def part_order(names) -> list[str]:
    """Parts in the study's order: presocial, then the known platforms in their table's order, then
    any others by name."""
    from ..sets import PRESOCIAL

    rank = {p: i for i, p in enumerate([PRESOCIAL, *_defaults()["platforms"]])}
    return sorted(set(names), key=lambda p: (rank.get(p, len(rank)), p))
