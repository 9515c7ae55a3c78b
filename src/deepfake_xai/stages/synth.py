"""Stage synth: the embedded synthetic TrueFace-like dataset, drawn and packed as one deterministic tar."""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import Option, json_object

HELP = "generate the synthetic TrueFace-like dataset"
EXAMPLE = "deepfake-xai synth --out data/synthetic --real 40"


def generator_config(config: dict) -> dict:
    """What shapes the generated images: data.synthetic (less its speed-only workers) and the profiles
    of the platforms it shares on (data.synthetic.platforms, with data.platforms applied)."""
    from ..names import platforms

    section = {k: v for k, v in config["data"]["synthetic"].items() if k not in ("workers", "platforms")}
    table = platforms(config["data"]["platforms"])
    shared = {}
    names = [] if section.get("layout") == "folders" else config["data"]["synthetic"]["platforms"]  # no copies
    for name in names:
        p = table[name]
        shared[name] = {"folders": list(p.folders), "suffix": p.suffix, "extension": p.extension, **p.profile()}
    return {**section, "platforms": shared}


OPTIONS = (
    Option("--out", "dataset root to (re)create"),
    Option("--archive", "write the dataset as one deterministic tar file (with --out too: both)"),
    Option("--config-json", "the data.synthetic config section (+ platforms) as JSON", type=json_object,
           config=generator_config),
    Option("--seed", "random seed (overrides the config's)", type=int),
    Option("--image-size", "image side in pixels (overrides the config's)", type=int),
    Option("--real", "number of real pre-social images (overrides the config's)", type=int),
    Option("--workers", "processes drawing images (default: the config's workers, else 1)", type=int,
           speed="data.synthetic.workers"),
)


def run(args: argparse.Namespace) -> None:
    from ..data.synth import SynthConfig, generate
    from ..names import Platform

    cfg = dict(args.config_json or {})
    shared = cfg.pop("platforms", None)
    for key in ("seed", "image_size", "real", "workers"):
        if getattr(args, key, None) is not None:
            cfg[key] = getattr(args, key)
    synth_cfg = SynthConfig.from_dict(cfg, None if shared is None else {
        name: Platform(name=name, **{**p, "folders": tuple(p["folders"])}) for name, p in shared.items()})
    if args.archive:
        import shutil
        import tempfile

        from ..data.archive import pack

        Path(args.archive).parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=Path(args.archive).parent) as tmp:
            root = generate(Path(tmp) / "data", synth_cfg, progress=not args.quiet)
            pack(root, args.archive)
            shutil.rmtree(root)
        print(f"wrote synthetic TrueFace-like dataset as {args.archive}")
    if args.out:
        root = generate(args.out, synth_cfg, progress=not args.quiet)
        print(f"wrote synthetic TrueFace-like dataset to {root}")
    if not (args.out or args.archive):
        raise SystemExit("error: give --out DIR and/or --archive FILE.tar")
