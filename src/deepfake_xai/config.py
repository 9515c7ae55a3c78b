"""Derived views of a validated workflow config: per-model settings, the training grid, cache keys.

Plain dictionaries in, plain dictionaries out: Snakemake (after ``snakemake.utils.validate``), the
DVC stages and the command line all resolve a model's settings through these same functions.
"""

from __future__ import annotations

import re
from itertools import product
from pathlib import PurePosixPath
from typing import Iterable
from urllib.parse import urlparse

from .data.layout import PLATFORM_PARTS
from .registry import REGISTRY, info

TEST_PARTS = PLATFORM_PARTS  # test sets that are inferred; "combined" is pooled from them
# Keys that shape the cached images; models sharing them share one cache.
CACHE_KEYS = ("resize", "center_crop")
# Keys that set only how fast a job runs, never what it computes: not part of a run's identity.
SPEED_KEYS = ("workers", "loader_workers")
# The compute section's keys of the same kind (threads per job, cache decoding processes).
COMPUTE_SPEED_KEYS = ("train_threads", "predict_threads", "cache_workers")
# The data section's keys that decide the manifest's content (Snakemake and DVC track these).
MANIFEST_KEYS = ("splits", "max_rejected_fraction", "max_unpartnered_fraction", "ignore", "verify")


def without_speed_keys(section: dict) -> dict:
    """``section`` less the keys that only set how fast a job runs: they reach the job as threads,
    a resource, a command-line option or a --speed file, so changing them never re-runs a finished job."""
    return {k: v for k, v in section.items() if k not in SPEED_KEYS}


def speed_section(config: dict) -> dict[str, dict]:
    """Every speed-only value as the command-line options of the subcommands they tune
    (``{subcommand: {option: value}}``; loader_workers per model name): what a job given
    ``--speed FILE`` reads from FILE's ``speed`` section."""
    compute = config["compute"]
    loader = {m: model_settings(config, m)["loader_workers"] for m in config["models"]}
    return {"synth": {"workers": config["data"]["synthetic"]["workers"]},
            "manifest": {"workers": config["data"]["workers"]},
            "cache": {"workers": compute["cache_workers"]},
            "train": {"threads": compute["train_threads"], "loader_workers": loader},
            **{cmd: {"threads": compute["predict_threads"]} for cmd in ("predict", "explain-cell", "xai-cell", "actmax")}}


def manifest_config(config: dict) -> dict:
    """What the manifest job is given as its config (and tracked by): the keys that shape it."""
    return {k: config["data"][k] for k in MANIFEST_KEYS}


def model_settings(config: dict, name: str) -> dict:
    """``train`` defaults overlaid with the model's own overrides, plus arch and target layer."""
    models = config["models"]
    if name not in models:
        raise KeyError(f"model {name!r} is not in the config's models ({', '.join(models)})")
    own = dict(models[name] or {})
    merged = {**config.get("train", {}), **own}
    mi = info(name, own.get("arch"), own.get("target_layer"))
    merged["arch"], merged["target_layer"] = mi.arch, mi.target_layer
    return merged


def cache_name(settings: dict) -> str:
    """File stem of the image cache a model reads, e.g. ``native_c64`` or ``r256_c224``."""
    resize = settings.get("resize")
    return f"{'native' if resize is None else f'r{resize}'}_c{settings['center_crop']}"


def cache_settings(config: dict, name: str) -> dict:
    s = model_settings(config, name)
    return {k: s.get(k) for k in CACHE_KEYS}


def training_pairs(config: dict) -> list[tuple[str, str]]:
    """(model, train_set) pairs to train, in a stable order, without duplicates."""
    grid = config.get("grid")
    blocks: Iterable[tuple[list[str], list[str]]]
    if grid:
        blocks = [(b["models"], b["train_sets"]) for b in grid]
    else:
        blocks = [(list(config["models"]), list(config["train_sets"]))]
    seen: dict[tuple[str, str], None] = {}
    for models, train_sets in blocks:
        for pair in product(models, train_sets):
            seen.setdefault(pair, None)
    return list(seen)


def required_test_parts(config: dict) -> list[str]:
    """Platform parts whose test images the configured test sets use ("combined" uses all four)."""
    wanted = set()
    for t in config["test_sets"]:
        wanted |= set(TEST_PARTS) if t == "combined" else {t}
    return [p for p in TEST_PARTS if p in wanted]


def predicted_sets(config: dict) -> list[str]:
    """What each training job predicts: the platform parts the configured test sets use, and
    "combined" (pooled from all four) when it is one of them."""
    return required_test_parts(config) + (["combined"] if "combined" in config["test_sets"] else [])


def grid_axes(config: dict) -> tuple[list[str], list[str]]:
    """The models (in grid order) and train sets (in ``train_sets`` order) the training grid uses."""
    pairs = training_pairs(config)
    models = list(dict.fromkeys(m for m, _ in pairs))
    train_sets = [t for t in config["train_sets"] if any(pt == t for _, pt in pairs)]
    train_sets += [t for _, t in pairs if t not in train_sets]
    return models, list(dict.fromkeys(train_sets))


def cells(config: dict) -> list[tuple[str, str, str]]:
    """Every (model, train_set, test_set) table cell the config asks for."""
    return [(m, tr, te) for m, tr in training_pairs(config) for te in config["test_sets"]]


def explain_cells(config: dict) -> list[tuple[str, str, str]]:
    """The (model, train_set, test_set) cells the explain stage covers: the configured blocks,
    restricted to cells that exist."""
    existing = cells(config)
    wanted: dict[tuple[str, str, str], None] = {}
    for block in config.get("explain", {}).get("cells", []):
        for m, tr, te in existing:
            if (block.get("models") is None or m in block["models"]) and tr in block["train_sets"] \
                    and te in block["test_sets"]:
                wanted.setdefault((m, tr, te), None)
    return list(wanted)


_ARCHIVE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def download_archives(config: dict) -> dict[str, dict]:
    """``data.download`` keyed by each archive's file name (its ``name``, else the URL's last path
    part). Two entries with one name would download into one file, the second replacing the first,
    so a clash is an error naming both URLs."""
    out: dict[str, dict] = {}
    for i, entry in enumerate(config["data"]["download"]):
        name = entry.get("name") or PurePosixPath(urlparse(entry["url"]).path).name
        if not _ARCHIVE_NAME.match(name) or name in (".", ".."):
            raise ValueError(f"data.download[{i}]: the url {entry['url']!r} ends in no usable file name "
                             f"({name!r}); give the entry a name: (letters, digits, '_', '.', '-')")
        if name in out:
            raise ValueError(f"data.download[{i}]: the archive name {name!r} (url {entry['url']!r}) is also that "
                             f"of {out[name]['url']!r}; give one of them a different name:")
        out[name] = entry
    return out


def check(config: dict) -> None:
    """Cross-key checks the schema cannot express; raise ``ValueError`` naming the key and value."""
    download_archives(config)
    models = config["models"]
    for block in config.get("grid") or []:
        for m in block["models"]:
            if m not in models:
                raise ValueError(
                    f"grid: model {m!r} is not defined under models (defined: {', '.join(models)})"
                )
    for name in models:
        s = model_settings(config, name)
        if s["image_size"] > s["center_crop"]:
            raise ValueError(
                f"models.{name}: image_size={s['image_size']} is larger than "
                f"center_crop={s['center_crop']} (the model input is cropped from the cached image)"
            )
        if s.get("resize") is not None and s["center_crop"] > s["resize"]:
            raise ValueError(
                f"models.{name}: center_crop={s['center_crop']} is larger than resize={s['resize']}"
            )


def unknown_archs(config: dict) -> list[str]:
    """Archs outside the built-in registry (these need a timm lookup)."""
    return sorted({model_settings(config, n)["arch"] for n in config["models"]} - set(REGISTRY))


class ConfigError(ValueError):
    """An invalid workflow config; the message names the key and value."""


def load(paths, schema: str = "workflow/schemas/config.schema.yaml") -> dict:
    """Read config files (later ones merged over earlier ones), validate them against the schema
    and fill in its defaults: what Snakemake's ``validate`` does, for callers outside Snakemake
    (the DVC parameter file, the command line)."""
    import jsonschema
    import yaml
    from jsonschema import validators

    config: dict = {}
    for path in [paths] if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__") else paths:
        with open(path) as fh:
            _merge(config, yaml.safe_load(fh) or {})
    with open(schema) as fh:
        schema_doc = yaml.safe_load(fh)
    base = validators.validator_for(schema_doc)
    props = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, sub):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema:
                    instance.setdefault(key, subschema["default"])
        yield from props(validator, properties, instance, sub)

    validator = validators.extend(base, {"properties": set_defaults})(schema_doc)
    try:
        validator.validate(config)
    except jsonschema.ValidationError as err:
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"Invalid config at {key}: {err.message}") from None
    try:
        check(config)
    except ValueError as err:
        raise ConfigError(f"Invalid config: {err}") from None
    return config


def _merge(into: dict, new: dict) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
