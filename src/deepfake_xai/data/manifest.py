"""Manifest builder: one Parquet row per image file, with labels derived from the TrueFace layout
and leakage-free splits.

Layout discovery reads each path's components instead of assuming fixed depths, so it accepts the
TrueFace layout with or without ``Train/``/``Test/`` levels (above or below the pre/post-social
folders) and extra sub-folders. A path that does not fit raises :class:`LayoutError`, naming it.

Splits are made by ``source_id`` (the pre-social image a shared copy came from), never by file:
all copies of one image land in the same split on every platform. Dataset-provided Train/Test
folders are respected; ``val`` is carved from train by group.
"""

from __future__ import annotations

import csv
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from . import layout
from .images import DEFAULT_MAX_PIXELS, BadImage, inspect_image, walk_files

MANIFEST_COLUMNS = [
    "image_id", "path", "label", "generator", "psi", "platform", "source_id", "split",
    "width", "height", "format", "mode", "bytes",
    "evidence_x0", "evidence_y0", "evidence_x1", "evidence_y1",
]
# Files that may sit in a dataset root and are not images.
SIDECAR_NAMES = {layout.EVIDENCE_FILE, "readme", "readme.md", "readme.txt", "license", "license.txt",
                 "sha256sums", "md5sums", "checksums.txt"}

_PRE = re.compile(r"^(truefaces?[_\- ]?)?pre[_\- ]?social$", re.I)
_POST = re.compile(r"^(truefaces?[_\- ]?)?post[_\- ]?social$", re.I)
_PSI = re.compile(r"psi[_\-]?([0-9]+(?:\.[0-9]+)?)", re.I)
_SPLIT_DIRS = {"train": "train", "training": "train", "test": "test", "testing": "test",
               "val": "val", "validation": "val"}
# Spellings seen in TrueFace copies: class folders "0_Real"/"1_Fake" beside "Real"/"Fake", the first
# StyleGAN as "StyleGAN1" beside "StyleGAN", and a fake's number as "seed1234" before sharing but
# "001234_TL" after. Each copy of one image must get one source_id (the split key), so these
# spellings are reduced to one form: "real"/"fake", "stylegan", and the number without padding.
_CLASS_DIR = re.compile(r"^(?:\d+[_\- ]?)?(real|fake)$", re.I)
_GENERATOR_ALIASES = {"stylegan1": "stylegan"}
_NUMBERED_STEM = re.compile(r"^(?:seed)?0*(\d+)$", re.I)


class LayoutError(ValueError):
    """A path that does not fit the TrueFace layout."""


class ManifestError(RuntimeError):
    """The dataset as a whole is unusable (too many rejected files, no images, ...)."""


@dataclass(frozen=True)
class PathInfo:
    label: int
    generator: str
    psi: float | None
    platform: str
    source_id: str
    dataset_split: str | None

    @property
    def image_id(self) -> str:
        return f"{self.platform}/{self.source_id}"


def parse_path(rel: str | PurePosixPath) -> PathInfo:
    """Derive label, generator, psi, platform and source_id from a path relative to the root."""
    rel = PurePosixPath(rel)
    parts = list(rel.parts)
    splits = {_SPLIT_DIRS[p.lower()] for p in parts[:-1] if p.lower() in _SPLIT_DIRS}
    if len(splits) > 1:
        raise LayoutError(f"{rel}: more than one split folder ({', '.join(sorted(splits))})")
    parts = [p for i, p in enumerate(parts) if i == len(parts) - 1 or p.lower() not in _SPLIT_DIRS]
    pre = [i for i, p in enumerate(parts[:-1]) if _PRE.match(p)]
    post = [i for i, p in enumerate(parts[:-1]) if _POST.match(p)]
    if pre:
        platform, start = layout.PRESOCIAL, pre[0] + 1
    elif post:
        i = post[0] + 1
        if i >= len(parts) - 1:
            raise LayoutError(f"{rel}: no platform folder below {parts[post[0]]}")
        platform = parts[i].lower()
        if platform not in layout.POST_PLATFORMS:
            raise LayoutError(
                f"{rel}: unknown platform folder {parts[i]!r} (known: "
                f"{', '.join(layout.PLATFORM_FOLDERS.values())}); remove it from the dataset root "
                "or list it under data.ignore in the config"
            )
        start = i + 1
    else:
        raise LayoutError(
            f"{rel}: not below a TrueFace_PreSocial or TrueFace_PostSocial folder; "
            "point data.root at the folder that holds them"
        )
    below = parts[start:]
    if len(below) < 3:
        raise LayoutError(f"{rel}: expected Real/<source>/... or Fake/<generator>/... below {platform}")
    kind = _CLASS_DIR.match(below[0])
    if kind is None:
        raise LayoutError(f"{rel}: expected a Real or Fake folder (or 0_Real, 1_Fake), found {below[0]!r}")
    kind = kind.group(1).lower()
    label = int(kind == "fake")
    generator = _GENERATOR_ALIASES.get(below[1].lower(), below[1].lower())
    if label == 1 and not generator.startswith("stylegan") and generator not in _extra_generators():
        raise LayoutError(f"{rel}: unknown generator folder {below[1]!r} below Fake/")
    psi = None
    for comp in below[2:-1]:
        m = _PSI.search(comp)
        if m:
            psi = float(m.group(1))
    stem = PurePosixPath(below[-1]).stem
    if platform != layout.PRESOCIAL:
        suffix = layout.PLATFORM_SUFFIXES[platform]
        if stem.upper().endswith(suffix.upper()):
            stem = stem[: -len(suffix)]
    numbered = _NUMBERED_STEM.match(stem)
    source_id = "/".join([kind, generator, *(c.lower() for c in below[2:-1]),
                          numbered.group(1) if numbered else stem])
    return PathInfo(label, generator, psi, platform, source_id, splits.pop() if splits else None)


def _extra_generators() -> set[str]:
    return {"gan", "progan", "stylegan3", "diffusion"}


def read_evidence(root: Path) -> dict[str, tuple[float, float, float, float]]:
    """Evidence boxes recorded by the synthetic generator, keyed by relative path (if any)."""
    path = root / layout.EVIDENCE_FILE
    if not path.exists():
        return {}
    out = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["path"]] = tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1"))
    return out


def _group_rank(seed: int, source_id: str) -> str:
    return hashlib.sha256(f"{seed}:{source_id}".encode()).hexdigest()


def assign_splits(
    df: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int
) -> pd.Series:
    """Split label per row, decided per ``source_id`` group and stratified by class.

    Within each (label, generator, psi) stratum the groups are ordered by a seeded hash and the first
    ``test_fraction`` go to test, the next ``val_fraction`` to val. A group some copy of which lies
    in a dataset ``Test`` folder goes to test as a whole (leakage-free beats the dataset's word), and
    val is carved from the remaining train groups. Groups outside any dataset split folder are split
    by the fractions even when others have folders (a mirror with ``Train``/``Test`` above the fakes
    only must still put reals in test). Deterministic, and stable per group.
    """
    groups = df.groupby("source_id", sort=True).agg(
        label=("label", "first"), generator=("generator", "first"), psi=("psi", "first"),
        dataset_split=("dataset_split", lambda s: "test" if (s == "test").any()
                       else ("val" if (s == "val").any() else ("train" if (s == "train").any() else None))),
    )
    groups["rank"] = [_group_rank(seed, sid) for sid in groups.index]
    split = pd.Series("train", index=groups.index, dtype=object)
    strata = groups.groupby(["label", "generator", groups["psi"].fillna(-1.0)], sort=True)
    for _, g in strata:
        g = g.sort_values("rank")
        given, free = g[g["dataset_split"].notna()], g[g["dataset_split"].isna()]
        # groups in dataset split folders: test and val as given, val carved from train if none given
        given_test = given.index[given["dataset_split"] == "test"]
        given_val = given.index[given["dataset_split"] == "val"]
        split[given_test] = "test"
        split[given_val] = "val"
        rest = given.index[~given.index.isin(given_test) & ~given.index.isin(given_val)]
        n_val = int(round(len(given) * val_fraction)) if len(given_val) == 0 else 0
        split[rest[:n_val]] = "val"
        # groups in no split folder: by the fractions
        n_test = int(round(len(free) * test_fraction))
        n_val = int(round(len(free) * val_fraction))
        split[free.index[:n_test]] = "test"
        split[free.index[n_test : n_test + n_val]] = "val"
    return df["source_id"].map(split)


def dataset_fingerprint(paths_and_sizes: list[tuple[str, int]]) -> str:
    """A short hash of the file list, stored in the manifest to detect a manifest of another version."""
    h = hashlib.sha256()
    for path, size in sorted(paths_and_sizes):
        h.update(f"{path}\t{size}\n".encode())
    return h.hexdigest()[:16]


def _listed_files(root: Path, ignore: list[str]) -> list[Path]:
    """The files below ``root`` the manifest reads (sidecars and data.ignore patterns left out)."""
    if not root.is_dir():
        raise ManifestError(
            f"dataset root {root} does not exist: generate it (deepfake-xai synth) or set "
            "data.root to your TrueFace copy"
        )
    files = [
        p for p in walk_files(root)
        if p.name.lower() not in SIDECAR_NAMES and not any(fnmatch(p.as_posix(), pat) for pat in ignore)
    ]
    if not files:
        raise ManifestError(f"dataset root {root} holds no files: is it the right folder?")
    return files


def _parsed(root: Path, files: list[Path]) -> list[tuple[Path, PathInfo]]:
    """Each file's place in the layout; a path that fits none stops the manifest (the first five named)."""
    parsed: list[tuple[Path, PathInfo]] = []
    layout_errors: list[str] = []
    for rel in files:
        try:
            parsed.append((rel, parse_path(rel)))
        except LayoutError as err:
            layout_errors.append(str(err))
    if layout_errors:
        more = f" (and {len(layout_errors) - 5} more)" if len(layout_errors) > 5 else ""
        raise ManifestError(
            f"{len(layout_errors)} path(s) below {root} do not fit the TrueFace layout:\n  "
            + "\n  ".join(layout_errors[:5]) + more
        )
    return parsed


def _inspected(root: Path, parsed: list, *, workers: int, verify: str, max_pixels: int, progress: bool) -> list:
    """(header metadata, None) or (None, the reason it was rejected) for each file, read in threads."""
    from tqdm import tqdm

    def inspect(item):
        rel, _ = item
        try:
            return inspect_image(root / rel, max_pixels=max_pixels, full=(verify == "full")), None
        except BadImage as err:
            return None, str(err)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(tqdm(pool.map(inspect, parsed), total=len(parsed), desc="read headers",
                         unit="file", disable=not progress))


def _tables(root: Path, parsed: list, results: list) -> tuple[pd.DataFrame, list[dict]]:
    """The manifest rows (duplicates of one image id rejected after the first) and the rejected files."""
    evidence = read_evidence(root)
    rows, rejected = [], []
    for (rel, info), (meta, reason) in zip(parsed, results):
        rel_s = rel.as_posix()
        if meta is None:
            rejected.append({"path": rel_s, "reason": reason})
            continue
        box = evidence.get(rel_s, (np.nan,) * 4)
        rows.append({
            "image_id": info.image_id, "path": rel_s, "label": info.label,
            "generator": info.generator, "psi": info.psi, "platform": info.platform,
            "source_id": info.source_id, "dataset_split": info.dataset_split, **meta,
            "evidence_x0": box[0], "evidence_y0": box[1], "evidence_x1": box[2], "evidence_y1": box[3],
        })
    manifest = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, "dataset_split"])
    dup = manifest["image_id"].duplicated(keep="first")
    for rel_s, iid in zip(manifest.loc[dup, "path"], manifest.loc[dup, "image_id"]):
        rejected.append({"path": rel_s, "reason": f"duplicate image_id {iid} (same image in two formats?)"})
    return manifest[~dup].reset_index(drop=True), rejected


def build_manifest(
    root: str | Path,
    *,
    val_fraction: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_rejected_fraction: float = 0.01,
    ignore: list[str] | None = None,
    workers: int = 4,
    verify: str = "quick",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Walk ``root`` and return (manifest, rejected) DataFrames.

    Raises :class:`ManifestError` if the root is missing or empty, or if more than
    ``max_rejected_fraction`` of the image files were rejected (the rejected table is attached to
    the exception as ``.rejected`` so the caller can still write it for inspection).
    """
    root = Path(root)
    files = _listed_files(root, ignore or [])
    parsed = _parsed(root, files)
    results = _inspected(root, parsed, workers=workers, verify=verify, max_pixels=max_pixels, progress=progress)
    manifest, rejected = _tables(root, parsed, results)
    rejected_df = pd.DataFrame(rejected, columns=["path", "reason"])

    frac = len(rejected_df) / max(1, len(files))
    if manifest.empty or frac > max_rejected_fraction:
        err = ManifestError(
            f"{len(rejected_df)} of {len(files)} files ({frac:.1%}) below {root} were rejected, more "
            f"than data.max_rejected_fraction={max_rejected_fraction:g}; see rejected.parquet for "
            "each file's reason, fix or remove them, or raise the limit"
        )
        err.rejected = rejected_df
        raise err

    manifest["split"] = assign_splits(manifest, val_fraction, test_fraction, seed)
    manifest = manifest.drop(columns=["dataset_split"])
    manifest["label"] = manifest["label"].astype("int8")
    manifest["psi"] = manifest["psi"].astype("float64")
    manifest = manifest.sort_values("image_id", kind="stable").reset_index(drop=True)
    manifest.attrs["fingerprint"] = dataset_fingerprint(list(zip(manifest["path"], manifest["bytes"])))
    return manifest[MANIFEST_COLUMNS], rejected_df


def unpartnered_copies(manifest: pd.DataFrame) -> dict[str, tuple[int, int, list[str]]]:
    """Per social platform: (images whose source_id no pre-social image has, images, first such
    paths). In TrueFace every shared image is a copy of a pre-social one, so many of these mean the
    platform's file naming differs from the pre-social one and its copies are split on their own."""
    pre = set(manifest.loc[manifest["platform"] == layout.PRESOCIAL, "source_id"])
    if not pre:
        return {}
    out = {}
    for platform in layout.POST_PLATFORMS:
        rows = manifest[manifest["platform"] == platform]
        alone = rows[~rows["source_id"].isin(pre)]
        if len(alone):
            out[platform] = (len(alone), len(rows), alone["path"].head(3).tolist())
    return out


def summarize(manifest: pd.DataFrame) -> pd.DataFrame:
    """Counts per platform x label x split (the table printed after a manifest is built)."""
    counts = (
        manifest.assign(label=manifest["label"].map({0: "real", 1: "fake"}))
        .groupby(["platform", "label", "split"]).size().unstack("split", fill_value=0)
    )
    for col in ("train", "val", "test"):
        if col not in counts:
            counts[col] = 0
    counts = counts[["train", "val", "test"]]
    counts["total"] = counts.sum(axis=1)
    order = {p: i for i, p in enumerate(layout.PLATFORM_PARTS)}
    counts = counts.reset_index()
    counts = counts.sort_values(["platform", "label"], key=lambda s: s.map(order) if s.name == "platform" else s)
    return counts.reset_index(drop=True)


def write_manifest(manifest: pd.DataFrame, path: str | Path, dataset: str) -> None:
    """Write the manifest Parquet atomically with the dataset name and fingerprint as metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..io import atomic_path

    table = pa.Table.from_pandas(manifest, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"deepfake_xai.dataset"] = dataset.encode()
    meta[b"deepfake_xai.fingerprint"] = manifest.attrs.get("fingerprint", "").encode()
    with atomic_path(path, suffix=".parquet") as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def read_manifest(path: str | Path, dataset: str | None = None) -> pd.DataFrame:
    """Read a manifest; with ``dataset``, refuse one written for another dataset."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist: build it first (rule manifest)")
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    found = meta.get(b"deepfake_xai.dataset", b"").decode()
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise ManifestError(f"{path} is not a deepfake-xai manifest: missing columns {missing}; rebuild it")
    if dataset is not None and found != dataset:
        raise ManifestError(
            f"{path} was written for dataset {found!r}, not {dataset!r}: delete it and rebuild"
        )
    df = table.to_pandas()
    df.attrs["fingerprint"] = meta.get(b"deepfake_xai.fingerprint", b"").decode()
    return df
