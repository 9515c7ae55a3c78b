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
from dataclasses import dataclass, field
from fnmatch import fnmatch
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from .. import names as known
from ..sets import PRESOCIAL
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

_PRE = layout.PRE_DIR
_POST = layout.POST_DIR
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
    """A path that does not fit the dataset's layout."""


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


@dataclass(frozen=True)
class Reader:
    """How a source's paths are read: its layout (``source``) and the platform and generator tables
    (defaults + the config's ``data.platforms`` / ``data.generators``)."""

    source: str = "trueface"
    platforms: dict = field(default_factory=known.platforms)
    generators: dict = field(default_factory=known.generators)

    @classmethod
    def from_config(cls, data: dict) -> Reader:
        """The reader of a config's data section (``source``, ``platforms``, ``generators``); the
        synthetic set is read in the layout it was written in (``data.synthetic.layout``)."""
        source = data.get("source", "trueface")
        if source == "synthetic":
            layout_name = data.get("layout") or (data.get("synthetic") or {}).get("layout")
            source = "folders" if layout_name == "folders" else "trueface"
        return cls(source, known.platforms(data.get("platforms")), known.generators(data.get("generators")))

    @cached_property
    def platform_folders(self) -> dict[str, str]:
        return known.by_folder(self.platforms)

    @cached_property
    def generator_folders(self) -> dict[str, str]:
        return known.by_folder(self.generators)

    def generator(self, folder: str) -> str | None:
        return self.generator_folders.get(folder.lower())


_DEFAULT_READER = Reader()


def _split_folders(rel: PurePosixPath) -> tuple[list[str], str | None]:
    """The path's parts without its train/val/test folders, and the split those name."""
    parts = list(rel.parts)
    splits = {_SPLIT_DIRS[p.lower()] for p in parts[:-1] if p.lower() in _SPLIT_DIRS}
    if len(splits) > 1:
        raise LayoutError(f"{rel}: more than one split folder ({', '.join(sorted(splits))})")
    parts = [p for i, p in enumerate(parts) if i == len(parts) - 1 or p.lower() not in _SPLIT_DIRS]
    return parts, (splits.pop() if splits else None)


def _source_id(kind: str, generator: str, groups: list[str], stem: str) -> str:
    numbered = _NUMBERED_STEM.match(stem)
    return "/".join([kind, generator, *(c.lower() for c in groups), numbered.group(1) if numbered else stem])


def parse_path(rel: str | PurePosixPath, reader: Reader | None = None) -> PathInfo:
    """Derive label, generator, psi, platform and source_id from a path relative to the root."""
    reader = reader or _DEFAULT_READER
    rel = PurePosixPath(rel)
    if reader.source == "folders":
        return _parse_folders(rel, reader)
    return _parse_trueface(rel, reader)


def _parse_trueface(rel: PurePosixPath, reader: Reader) -> PathInfo:
    """TrueFace and TrueFake: ``TrueFace_PreSocial|TrueFace_PostSocial/<Platform>`` then
    ``Real/<source>/...`` or ``Fake/<generator>/<subset>/...``."""
    parts, dataset_split = _split_folders(rel)
    pre = [i for i, p in enumerate(parts[:-1]) if _PRE.match(p)]
    post = [i for i, p in enumerate(parts[:-1]) if _POST.match(p)]
    platform: known.Platform | None = None
    if pre:
        start = pre[0] + 1
    elif post:
        i = post[0] + 1
        if i >= len(parts) - 1:
            raise LayoutError(f"{rel}: no platform folder below {parts[post[0]]}")
        name = reader.platform_folders.get(parts[i].lower())
        if name is None:
            folders = ", ".join(f for p in reader.platforms.values() for f in p.folders)
            raise LayoutError(
                f"{rel}: unknown platform folder {parts[i]!r} (known: {folders}); add it under data.platforms "
                f"in the config (e.g. {parts[i].lower()}: {{folders: [{parts[i]}], suffix: _XX, extension: .jpg}}), "
                "or list it under data.ignore"
            )
        platform, start = reader.platforms[name], i + 1
    else:
        raise LayoutError(
            f"{rel}: not below a TrueFace_PreSocial or TrueFace_PostSocial folder; "
            "point data.root at the folder that holds them (or choose another data.source)"
        )
    below = parts[start:]
    part = PRESOCIAL if platform is None else platform.name
    if len(below) < 3:
        raise LayoutError(f"{rel}: expected Real/<source>/... or Fake/<generator>/... below {part}")
    kind = _CLASS_DIR.match(below[0])
    if kind is None:
        raise LayoutError(f"{rel}: expected a Real or Fake folder (or 0_Real, 1_Fake), found {below[0]!r}")
    kind = kind.group(1).lower()
    label = int(kind == "fake")
    generator = reader.generator(below[1])
    if generator is None:
        if label == 1:
            raise LayoutError(
                f"{rel}: unknown generator folder {below[1]!r} below Fake/; add it under data.generators in the "
                f"config (e.g. {_word(below[1])}: {{folders: [{below[1]}], family: gan}}), or list it under data.ignore")
        generator = _word(below[1])  # a real source need not be listed: it is real whatever its name
    psi = None
    for comp in below[2:-1]:
        m = _PSI.search(comp)
        if m:
            psi = float(m.group(1))
    stem = PurePosixPath(below[-1]).stem
    if platform is not None and platform.suffix and stem.upper().endswith(platform.suffix.upper()):
        stem = stem[: -len(platform.suffix)]
    return PathInfo(label, generator, psi, part, _source_id(kind, generator, below[2:-1], stem), dataset_split)


def _parse_folders(rel: PurePosixPath, reader: Reader) -> PathInfo:
    """The CNNDetection/ForenSynths convention ``[split/]<group>/[<sub>/]0_real|1_fake/...`` (group =
    generator) and plain ``real/`` and ``fake/`` trees (generator ``unknown``)."""
    parts, dataset_split = _split_folders(rel)
    where = [i for i, p in enumerate(parts[:-1]) if _CLASS_DIR.match(p)]
    if not where:
        raise LayoutError(f"{rel}: no 0_real/1_fake (or real/fake) folder above the file; the folders layout is "
                          "[train|val|test/]<generator>/[<subfolder>/]0_real|1_fake/<image>")
    c = where[-1]
    kind = _CLASS_DIR.match(parts[c]).group(1).lower()
    groups = parts[:c]
    if groups:
        generator = reader.generator(groups[0]) or _word(groups[0])
    else:
        generator = "real" if kind == "real" else "unknown"
    psi = None
    for comp in [*groups[1:], *parts[c + 1:-1]]:
        m = _PSI.search(comp)
        if m:
            psi = float(m.group(1))
    stem = PurePosixPath(parts[-1]).stem
    source_id = "/".join([kind, generator, *(p.lower() for p in [*groups[1:], *parts[c + 1:-1]]), stem])
    return PathInfo(int(kind == "fake"), generator, psi, PRESOCIAL, source_id, dataset_split)


def _word(folder: str) -> str:
    """A folder name as a generator name: lower case, runs of other characters as '_'."""
    return re.sub(r"[^a-z0-9]+", "_", folder.lower()).strip("_") or "unknown"


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


def _parsed(root: Path, files: list[Path], reader: Reader) -> list[tuple[Path, PathInfo]]:
    """Each file's place in the layout; a path that fits none stops the manifest (the first five named)."""
    parsed: list[tuple[Path, PathInfo]] = []
    layout_errors: list[str] = []
    for rel in files:
        try:
            parsed.append((rel, parse_path(rel, reader)))
        except LayoutError as err:
            layout_errors.append(str(err))
    _raise_layout_errors(layout_errors, f"path(s) below {root} do not fit the {reader.source} layout")
    return parsed


def _raise_layout_errors(errors: list[str], what: str) -> None:
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise ManifestError(f"{len(errors)} {what}:\n  " + "\n  ".join(errors[:5]) + more)


CSV_COLUMNS = ("path", "label")
CSV_OPTIONAL = ("generator", "platform", "source_id", "split")
_LABELS = {"0": 0, "1": 1, "real": 0, "fake": 1}


def _table_rows(root: Path, table: Path, reader: Reader) -> list[tuple[Path, PathInfo]]:
    """The ``csv`` source: one row per image, ``path,label`` (0/1 or real/fake) and optional
    ``generator``, ``platform``, ``source_id``, ``split``; paths relative to the dataset root."""
    if not table.is_file():
        raise ManifestError(f"data.table: {table} does not exist: give the CSV of path,label rows "
                            f"(default: labels.csv in the dataset root {root})")
    with open(table, newline="") as fh:
        reader_csv = csv.DictReader(fh)
        columns = [c.strip() for c in reader_csv.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in columns]
        if missing:
            raise ManifestError(f"{table}: missing column(s) {', '.join(missing)} (found: {', '.join(columns) or 'none'}); "
                                f"the table needs path,label and may have {', '.join(CSV_OPTIONAL)}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in reader_csv]
    parts = {PRESOCIAL, *reader.platforms}
    out, errors, seen = [], [], {}
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"{table}:{n}"
        rel = PurePosixPath(row["path"])
        label = _LABELS.get(row["label"].lower())
        platform = row.get("platform") or PRESOCIAL
        split = row.get("split", "").lower() or None
        if rel.is_absolute() or ".." in rel.parts or not row["path"]:
            errors.append(f"{where}: path {row['path']!r} must be relative to the dataset root {root}, without '..'")
        elif label is None:
            errors.append(f"{where}: label {row['label']!r} is not one of 0, 1, real, fake")
        elif platform not in parts:
            errors.append(f"{where}: platform {platform!r} is not one of {', '.join(sorted(parts))} (add it under "
                          "data.platforms)")
        elif split is not None and split not in _SPLIT_DIRS:
            errors.append(f"{where}: split {row['split']!r} is not one of train, val, test")
        elif rel.as_posix() in seen:
            errors.append(f"{where}: {rel} is also listed on line {seen[rel.as_posix()]}: one row per file")
        else:
            seen[rel.as_posix()] = n
            kind = "fake" if label else "real"
            generator = _word(row.get("generator") or ("real" if label == 0 else "unknown"))
            source = row.get("source_id") or "/".join([kind, generator, rel.with_suffix("").as_posix().lower()])
            out.append((Path(rel), PathInfo(label, generator, None, platform, source,
                                            _SPLIT_DIRS[split] if split else None)))
    _raise_layout_errors(errors, f"row(s) of {table} are not usable")
    if not out:
        raise ManifestError(f"{table} lists no images")
    return out


def _inspected(root: Path, parsed: list, *, workers: int, verify: str, max_pixels: int, progress: bool) -> list:
    """(header metadata, None) or (None, the reason it was rejected) for each file, read in threads."""
    from ..progress import progress_bar

    def inspect(item):
        rel, _ = item
        try:
            return inspect_image(root / rel, max_pixels=max_pixels, full=(verify == "full")), None
        except BadImage as err:
            return None, str(err)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(progress_bar(pool.map(inspect, parsed), total=len(parsed), desc="read headers",
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


def survey(root: str | Path, *, reader: Reader | None = None, ignore: list[str] | None = None,
           table: str | Path | None = None) -> list[tuple[Path, PathInfo]]:
    """Each file the manifest would read (path relative to ``root``) with its place in the layout,
    without opening an image: what ``build_manifest`` starts from and ``doctor`` reports."""
    root = Path(root)
    reader = reader or _DEFAULT_READER
    if reader.source == "csv":
        if not root.is_dir():
            raise ManifestError(f"dataset root {root} does not exist: set data.root to the folder the table's "
                                "paths are relative to")
        return _table_rows(root, Path(table) if table else root / "labels.csv", reader)
    return _parsed(root, _listed_files(root, ignore or []), reader)


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
    reader: Reader | None = None,
    table: str | Path | None = None,
    parts: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Walk ``root`` (or read the ``csv`` source's ``table``) and return (manifest, rejected) DataFrames.

    Raises :class:`ManifestError` if the root is missing or empty, or if more than
    ``max_rejected_fraction`` of the image files were rejected (the rejected table is attached to
    the exception as ``.rejected`` so the caller can still write it for inspection). With ``parts``,
    a platform the data holds but the list lacks stops it too (its images would be in no set).
    """
    root = Path(root)
    reader = reader or _DEFAULT_READER
    parsed = survey(root, reader=reader, ignore=ignore, table=table)
    files = [rel for rel, _ in parsed]
    if parts is not None:
        extra = sorted({info.platform for _, info in parsed} - set(parts))
        if extra:
            raise ManifestError(f"{root} holds the part(s) {', '.join(extra)}, which data.parts "
                                f"({', '.join(parts)}) leaves out: add them to data.parts, or drop data.parts "
                                "to use every part present")
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
    pre = set(manifest.loc[manifest["platform"] == PRESOCIAL, "source_id"])
    if not pre:
        return {}
    out = {}
    for platform in known.part_order(manifest["platform"].unique())[1:]:
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
    order = {p: i for i, p in enumerate(known.part_order(counts.index.get_level_values("platform").unique()))}
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
