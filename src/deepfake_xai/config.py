"""Derived views of a validated workflow config: per-model settings, the training grid, cache keys;
the defaults and checks the schema cannot hold (set and method names come from ``sets.py`` and
``explain/catalog.py``, not from the schema).

Plain dictionaries in, plain dictionaries out: Snakemake (after ``snakemake.utils.validate``), the
DVC stages and the command line all resolve a model's settings through these same functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import product
from pathlib import PurePosixPath
from urllib.parse import urlparse

from . import sets
from .explain import catalog
from .registry import REGISTRY, info
from .settings import SPEED_KEYS, without_speed_keys  # noqa: F401  (the workflow reads them here)


def fill_defaults(config: dict) -> dict:
    """The defaults that come from the code's own lists, not from the schema: every train and test
    set (sets.py), every method that is not opt-in and the spatial-prior method (explain/catalog.py)."""
    config.setdefault("train_sets", list(sets.TRAIN_SETS))
    config.setdefault("test_sets", list(sets.TEST_SETS))
    explain = config.setdefault("explain", {})
    explain.setdefault("methods", catalog.default_methods())
    explain.setdefault("cells", [{"models": None, "train_sets": [sets.PRESOCIAL], "test_sets": [sets.PRESOCIAL]}])
    config.setdefault("xai", {}).setdefault("prior_method", catalog.PRIOR_METHOD)
    return config


def _check_names(config: dict) -> None:
    """Set and method names, checked against their one definition (sets.py, explain/catalog.py)."""
    def known(values, allowed, key, what):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{key}: unknown {what} {', '.join(map(repr, bad))}; expected one of {', '.join(allowed)}")

    known(config["train_sets"], sets.TRAIN_SETS, "train_sets", "train set")
    known(config["test_sets"], sets.TEST_SETS, "test_sets", "test set")
    for i, block in enumerate(config.get("grid") or []):
        known(block["train_sets"], sets.TRAIN_SETS, f"grid[{i}].train_sets", "train set")
    for i, block in enumerate(config["explain"]["cells"]):
        known(block["train_sets"], sets.TRAIN_SETS, f"explain.cells[{i}].train_sets", "train set")
        known(block["test_sets"], sets.TEST_SETS, f"explain.cells[{i}].test_sets", "test set")
    known(config["data"].get("platforms") or {}, sets.SHARED_PLATFORMS, "data.platforms", "platform")
    catalog.check_names(config["explain"]["methods"], "explain.methods")
    catalog.check_names([config["xai"]["prior_method"]], "xai.prior_method")


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
    return sets.parts_of(config["test_sets"])


def predicted_sets(config: dict) -> list[str]:
    """What each training job predicts: the platform parts the configured test sets use, and
    "combined" (pooled from all four) when it is one of them."""
    return sets.predicted_sets(config["test_sets"])


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
    fill_defaults(config)
    _check_names(config)
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
