"""Derived views of a validated workflow config: per-model settings, the training grid, cache keys;
the defaults and checks the schema cannot hold (set and method names come from ``sets.py`` and
``explain/catalog.py``, not from the schema).

Plain dictionaries in, plain dictionaries out: Snakemake (after ``snakemake.utils.validate``), the
DVC stages and the command line all resolve a model's settings through these same functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from fnmatch import fnmatch
from itertools import product
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from . import names as known_names
from . import sets
from .explain import catalog
from .pretrained import check_source
from .registry import REGISTRY, info
from .settings import SPEED_KEYS, without_speed_keys  # noqa: F401  (the workflow reads them here)


def dataset_parts(data: dict) -> list[str]:
    """The parts of a dataset: ``data.parts`` if given; else presocial and the platforms the synthetic
    set shares on, the platform folders found below a TrueFace/TrueFake root, or (no root yet, a
    download) the source's published platforms. ``folders`` and ``csv`` datasets hold originals only
    (unless the table's platform column names others)."""
    if data.get("parts"):
        return list(data["parts"])
    source = data["source"]
    if source == "synthetic":
        shared = data["synthetic"]["platforms"] if data["synthetic"].get("layout") != "folders" else []
        return [sets.PRESOCIAL, *shared]
    root = Path(data["root"]) if data.get("root") else None
    if source == "folders":
        return [sets.PRESOCIAL]
    if source == "csv":
        return _table_parts(root, data)
    if root is not None and root.is_dir():
        return [sets.PRESOCIAL, *_platforms_below(root, data)]
    return [sets.PRESOCIAL, *known_names.source_platforms(source)]


def _platforms_below(root: Path, data: dict) -> list[str]:
    """The known platforms whose folders lie below a TrueFace_PostSocial folder of ``root`` (within
    three levels, through Train/Test folders), in the platform table's order; ignored folders left out."""
    from .data.layout import POST_DIR as post_dir

    folders = known_names.by_folder(known_names.platforms(data.get("platforms")))
    found, frontier = set(), [root]
    for _ in range(4):
        below = []
        for folder in frontier:
            for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
                if post_dir.match(sub.name):
                    for plat in sub.iterdir():
                        rel = plat.relative_to(root).as_posix()
                        ignored = any(fnmatch(f"{rel}/x.jpg", pat) for pat in data.get("ignore") or [])
                        if plat.is_dir() and plat.name.lower() in folders and not ignored:
                            found.add(folders[plat.name.lower()])
                else:
                    below.append(sub)
        frontier = below
    return known_names.part_order(found)


def _table_parts(root: Path | None, data: dict) -> list[str]:
    """The parts a csv source's table names in its platform column (presocial when none)."""
    import csv

    table = Path(data["table"]) if data.get("table") else (root / "labels.csv" if root else None)
    names = {sets.PRESOCIAL}
    if table is not None and table.is_file():
        with open(table, newline="") as fh:
            names |= {(row.get("platform") or "").strip() or sets.PRESOCIAL for row in csv.DictReader(fh)}
    return known_names.part_order(names)


def train_sets_of(config: dict) -> list[str]:
    """Every train set the config's dataset can have: its parts, combined, the protocols."""
    return sets.train_set_names(config["data"]["parts"], config.get("protocols") or {})


def test_sets_of(config: dict) -> list[str]:
    return sets.test_set_names(config["data"]["parts"])


def protocol_rows(config: dict, train_set: str) -> dict | None:
    """What a protocol train set keeps (``{"part", "generators"}``), None for a plain part or combined."""
    spec = (config.get("protocols") or {}).get(train_set)
    if spec is None:
        return None
    gens = spec.get("generators")
    if gens is None:
        table = known_names.generators(config["data"].get("generators"))
        gens = sorted(n for n, g in table.items() if g.family in spec["families"])
    return {"part": spec.get("part", sets.PRESOCIAL), "generators": list(gens)}


def transfer_view(config: dict, name: str) -> dict:
    """The config as the stages of the transfer dataset ``name`` read it: its name, its data section,
    its test sets (the models, training and compute settings stay the main config's)."""
    target = config["transfer"][name]
    return {**config, "dataset": name, "data": target["data"], "test_sets": target["test_sets"]}


def dataset_view(config: dict, name: str) -> dict:
    """The config of the main dataset (itself) or of a transfer dataset."""
    return config if name == config["dataset"] else transfer_view(config, name)


def transfer_jobs(config: dict) -> list[tuple[str, str, str]]:
    """(transfer dataset, model, train set) prediction jobs: each trained pair a transfer entry lists."""
    out = []
    pairs = training_pairs(config)
    for name, target in (config.get("transfer") or {}).items():
        for m, tr in pairs:
            if (target["models"] is None or m in target["models"]) and \
                    (target["train_sets"] is None or tr in target["train_sets"]):
                out.append((name, m, tr))
    return out


def transfer_cells(config: dict) -> list[tuple[str, str, str, str]]:
    """(transfer dataset, model, train set, test set) cross-dataset cells."""
    return [(name, m, tr, te) for name, m, tr in transfer_jobs(config)
            for te in config["transfer"][name]["test_sets"]]


def fill_defaults(config: dict) -> dict:
    """The defaults that come from the code's own lists, not from the schema: the dataset's parts and
    with them every train and test set (sets.py), every method that is not opt-in and the
    spatial-prior method (explain/catalog.py)."""
    for data in [config["data"], *(t["data"] for t in (config.get("transfer") or {}).values())]:
        data["synthetic"].setdefault("platforms", known_names.source_platforms("synthetic"))
        data["parts"] = dataset_parts(data)
    for target in (config.get("transfer") or {}).values():
        if target.get("test_sets") is None:
            parts = target["data"]["parts"]  # combined only where it pools more than one part
            target["test_sets"] = sets.test_set_names(parts) if len(parts) > 1 else list(parts)
    config.setdefault("train_sets", [s for s in train_sets_of(config) if s not in (config.get("protocols") or {})])
    config.setdefault("test_sets", test_sets_of(config))
    explain = config.setdefault("explain", {})
    explain.setdefault("methods", catalog.default_methods())
    explain.setdefault("cells", [{"models": None, "train_sets": [sets.PRESOCIAL], "test_sets": [sets.PRESOCIAL]}])
    config.setdefault("xai", {}).setdefault("prior_method", catalog.PRIOR_METHOD)
    config["xai"].setdefault("replacements", list(catalog.REPLACEMENTS))
    return config


def _check_names(config: dict) -> None:
    """Set and method names, checked against their one definition (sets.py, explain/catalog.py)."""
    def require(values, allowed, key, what):
        bad = [v for v in values if v not in allowed]
        if bad:
            raise ValueError(f"{key}: unknown {what} {', '.join(map(repr, bad))}; expected one of {', '.join(allowed)}")

    data = config["data"]
    table = known_names.platforms(data.get("platforms"))  # checks the entries' names and keys
    known_names.by_folder(table)
    known_names.by_folder(known_names.generators(data.get("generators")))
    require(data["parts"], [sets.PRESOCIAL, *table], "data.parts", "part")
    if data["source"] == "synthetic":
        require(data["synthetic"]["platforms"], list(table), "data.synthetic.platforms", "platform")
    for name, spec in (config.get("protocols") or {}).items():
        if not known_names.NAME.match(name) or name in (*data["parts"], sets.COMBINED):
            raise ValueError(f"protocols.{name}: a protocol's name must be a new lower-case word (not a part or "
                             f"{sets.COMBINED}): it names a train set and a folder")
        if ("generators" in spec) == ("families" in spec):
            raise ValueError(f"protocols.{name}: give either generators: or families: (the fakes it trains on)")
        require([spec.get("part", sets.PRESOCIAL)], sets.test_set_names(data["parts"]), f"protocols.{name}.part", "part")
    for name, target in (config.get("transfer") or {}).items():
        where = f"transfer.{name}"
        if name == config["dataset"] or not re.match(r"^[A-Za-z0-9_-]+$", name):
            raise ValueError(f"{where}: a transfer dataset needs its own name (letters, digits, '_', '-'), not the "
                             f"main dataset's {config['dataset']!r}: its manifest and cache go to results/{name}/")
        parts = target["data"]["parts"]
        require(parts, [sets.PRESOCIAL, *known_names.platforms(target["data"].get("platforms"))],
                f"{where}.data.parts", "part")
        require(target["test_sets"], sets.test_set_names(parts), f"{where}.test_sets", "test set")
        require(target["models"] or [], list(config["models"]), f"{where}.models", "model")
        require(target["train_sets"] or [], train_sets_of(config), f"{where}.train_sets", "train set")
        if target["data"]["root"] is None and target["data"]["source"] != "synthetic" and not target["data"]["download"]:
            raise ValueError(f"{where}.data: source {target['data']['source']} needs data.root (an existing copy) "
                             "or data.download (archives)")
    train_sets, test_sets = train_sets_of(config), test_sets_of(config)
    require(config["train_sets"], train_sets, "train_sets", "train set")
    require(config["test_sets"], test_sets, "test_sets", "test set")
    for i, block in enumerate(config.get("grid") or []):
        require(block["train_sets"], train_sets, f"grid[{i}].train_sets", "train set")
    for i, block in enumerate(config["explain"]["cells"]):
        require(block["train_sets"], train_sets, f"explain.cells[{i}].train_sets", "train set")
        require(block["test_sets"], test_sets, f"explain.cells[{i}].test_sets", "test set")
    catalog.check_names(config["explain"]["methods"], "explain.methods")
    catalog.check_names([config["xai"]["prior_method"]], "xai.prior_method")
    require(config["xai"]["replacements"], catalog.REPLACEMENTS, "xai.replacements", "replacement")


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
    """Platform parts whose test images the configured test sets use ("combined" uses all)."""
    return sets.parts_of(config["test_sets"], config["data"]["parts"])


def predicted_sets(config: dict) -> list[str]:
    """What each training job predicts: the platform parts the configured test sets use, and
    "combined" (pooled from every part) when it is one of them."""
    return sets.predicted_sets(config["test_sets"], config["data"]["parts"])


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


def download_archives(config: dict) -> dict[str, dict]:
    """``data.download`` keyed by each archive's file name (its ``name``, else the URL's last path
    part). Two entries with one name would download into one file, the second replacing the first,
    so a clash is an error naming both URLs."""
    out: dict[str, dict] = {}
    for i, entry in enumerate(config["data"]["download"]):
        if entry.get("name") is not None:
            name = entry["name"]
            check_path_name(name, f"data.download[{i}].name")
        else:
            name = PurePosixPath(urlparse(entry["url"]).path).name
            if not PATH_NAME.fullmatch(name):
                raise ValueError(f"data.download[{i}]: the url {entry['url']!r} ends in no usable file name "
                                 f"({name!r}); give the entry a name: (letters, digits, '_', '.', '+', '-')")
        if name in out:
            raise ValueError(f"data.download[{i}]: the archive name {name!r} (url {entry['url']!r}) is also that "
                             f"of {out[name]['url']!r}; give one of them a different name:")
        out[name] = entry
    return out


# A name that becomes one part of a path (results/{dataset}/models/{model}/...): one safe component,
# never ".", "..", a separator or a leading dot or dash.
PATH_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def check_path_name(value, key: str) -> None:
    """A clear error for a name that cannot be one path component, naming the config key."""
    if not isinstance(value, str) or not PATH_NAME.fullmatch(value):
        raise ValueError(f"{key}: {value!r} is not a usable name: it becomes one folder or file name in the "
                         "results, so use letters, digits, '_', '.', '+' or '-', starting with a letter or digit "
                         "(no '/', no '..')")


def _check_path_names(config: dict) -> None:
    """Every config name that becomes a path part: the dataset, the models, the protocols, the transfer
    datasets, and the platforms and generators a dataset adds."""
    check_path_name(config["dataset"], "dataset")
    for name in config["models"]:
        check_path_name(name, f"models.{name}")
    for section in ("protocols", "transfer"):
        for name in config.get(section) or {}:
            check_path_name(name, f"{section}.{name}")
    datas = [("data", config["data"]), *((f"transfer.{n}.data", t["data"]) for n, t in
                                        (config.get("transfer") or {}).items())]
    for where, data in datas:
        for section in ("platforms", "generators"):
            for name in data.get(section) or {}:
                check_path_name(name, f"{where}.{section}.{name}")


def check(config: dict) -> None:
    """Cross-key checks the schema cannot express; raise ``ValueError`` naming the key and value."""
    fill_defaults(config)
    _check_path_names(config)
    _check_names(config)
    download_archives(config)
    for name in config.get("transfer") or {}:
        download_archives(transfer_view(config, name))
    models = config["models"]
    for block in config.get("grid") or []:
        for m in block["models"]:
            if m not in models:
                raise ValueError(
                    f"grid: model {m!r} is not defined under models (defined: {', '.join(models)})"
                )
    for name in models:
        s = model_settings(config, name)
        if s.get("pretrained"):
            check_source(s.get("pretrained_from"), s.get("pretrained_sha256"), f"models.{name}.pretrained_from")
        if s.get("freeze_backbone") and not s.get("pretrained"):
            raise ValueError(f"models.{name}: freeze_backbone trains a head on the backbone's features, random ones "
                             "without pretrained weights; set pretrained: true")
        if s.get("freeze_backbone") and config.get("compute", {}).get("gpus_per_job", 1) > 1:
            raise ValueError(f"models.{name}: freeze_backbone trains a linear head in one process; set "
                             "compute.gpus_per_job: 1")
        if s["image_size"] > s["center_crop"]:
            raise ValueError(
                f"models.{name}: image_size={s['image_size']} is larger than "
                f"center_crop={s['center_crop']} (the model input is cropped from the cached image)"
            )
        if s.get("resize") is not None and s["center_crop"] > s["resize"]:
            raise ValueError(
                f"models.{name}: center_crop={s['center_crop']} is larger than resize={s['resize']}"
            )


# What a pretrained backbone depends on: the pretrained stage gets these alone, so that a change of
# any other setting (lr, epochs) fetches nothing again.
PRETRAINED_KEYS = ("arch", "model_args", "pretrained_from", "pretrained_sha256")


def pretrained_settings(settings: dict) -> dict:
    return {k: settings.get(k) for k in PRETRAINED_KEYS}


def pretrained_models(config: dict) -> list[str]:
    """The configured models whose training starts from pretrained weights."""
    return [m for m in config["models"] if model_settings(config, m).get("pretrained")]


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
