"""The ``deepfake-xai`` command line: the DAG's stages (``stages/``, one module each, which declares its
options) and the user commands ``explain``, ``share`` and ``doctor``. The
Snakemake rules and the DVC stages run ``python -m deepfake_xai <stage>``: one code path for both
and for a person at a terminal."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from . import __version__
from .data.cache import CacheMismatch
from .explain.catalog import SINGLE_IMAGE_METHODS
from .explain.catalog import names as method_names
from .names import platforms
from .registry import ModelError
from .stages import plumbing
from .stages.spec import Option, build, weights_inputs
from .stages.wiring import DAG_STAGES, module_name

CHOICES = ("predicted", "fake", "real")
USER_COMMANDS = {
    "explain": ("verdict and heatmap panel for one image",
                "deepfake-xai explain photo.jpg --weights results/synthetic/models/mnasnet_100/presocial/model.safetensors",
                (Option("image", "the image file"), *weights_inputs(None, settings_required=False),
                 Option("--arch", "the model's timm architecture (default: from the train.json beside --weights, "
                        "else efficientnet_b2)"),
                 Option("--size", "model input side, a center crop (default: from train.json, else 64)", type=int),
                 Option("--resize", "resize the shorter side first (default: from train.json, else none; 0: none)",
                        type=int),
                 Option("--threshold", "P(fake) at or above which the image is called fake", type=float, default=0.5),
                 Option("--method", f"explanation methods (default: {' '.join(SINGLE_IMAGE_METHODS)}); one or more of: "
                        f"{', '.join(method_names())}", nargs="+", choices=method_names(), metavar="METHOD"),
                 Option("--target", "the class explained", choices=CHOICES, default="predicted"),
                 Option("--out", "the panel PNG", default="explanation.png"))),
    "share": ("apply a social platform's re-encoding to a folder of images",
              "deepfake-xai share photos/ shared/ --platform telegram",
              (Option("src", "folder of images"), Option("dst", "folder for the shared copies"),
               Option("--platform", "the platform", required=True, choices=list(platforms())),
               Option("--scale", "override the platform's resize factor", type=float),
               Option("--quality", "override the platform's JPEG quality", type=int))),
    "doctor": ("check the environment: versions, GPU, free disk, config, dataset root",
               "deepfake-xai doctor --config config/trueface.yaml",
               (Option("--config", "config files to validate, merged in order (--config with no file skips the "
                       "config checks)", nargs="*", default=["config/config.yaml"]),
                Option("--results", "where results go (free disk is checked there)", default="results"))),
}


def cmd_explain(args: argparse.Namespace) -> None:
    from .explain.single import explain_image

    settings = _explain_settings(args)
    explain_image(args.image, weights=args.weights, settings=settings, device=args.device, threads=args.threads,
                  methods=args.method, target=args.target, threshold=args.threshold, out=args.out)


def _explain_settings(args: argparse.Namespace) -> dict:
    """The model's settings for `explain`: --settings-json, else the train.json a training job wrote
    beside the weights, else --arch and --size; --arch, --size and --resize given on the command line
    override either."""
    settings = args.settings_json
    summary = Path(args.weights).with_name("train.json")
    if settings is None and summary.is_file():
        settings = json.loads(summary.read_text()).get("settings")
        if not isinstance(settings, dict) or "arch" not in settings:
            raise SystemExit(f"error: {summary} has no 'settings' with an 'arch'; pass --settings-json or --arch")
        print(f"settings from {summary}")
    settings = dict(settings or {"arch": "efficientnet_b2", "image_size": 64, "target_layer": None})
    if args.arch is not None and args.arch != settings.get("arch"):
        settings["target_layer"] = None  # the other architecture's layer name means nothing here
    for key, value in (("arch", args.arch), ("image_size", args.size), ("resize", args.resize)):
        if value is not None:
            settings[key] = value or None  # --resize 0: no resize
    settings.setdefault("image_size", 64)
    return settings


def cmd_share(args: argparse.Namespace) -> None:
    from .data.social import profile_from_config, share_folder

    overrides = {k: v for k, v in (("scale", args.scale), ("jpeg_quality", args.quality)) if v is not None}
    profile = profile_from_config(args.platform, overrides)
    written = share_folder(args.src, args.dst, profile, progress=not args.quiet)
    print(f"{len(written)} images shared on {profile.name} ({profile.profile()}) into {args.dst}")


def cmd_doctor(args: argparse.Namespace) -> None:
    from .doctor import run

    checks = run(args.config, args.results)
    for c in checks:
        print(c.line())
    bad = [c for c in checks if c.status == "FAIL"]
    warn = [c for c in checks if c.status == "WARN"]
    print(f"{len(checks)} checks: {len(bad)} failed, {len(warn)} warnings")
    if bad:
        raise SystemExit(1)


def _subparser(sub, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=f"{help_text}.", epilog=f"example:\n  {example}",
                          formatter_class=_HelpFormatter)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The example kept as written."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="deepfake-xai", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in DAG_STAGES:
        stage = importlib.import_module(f"{__package__}.stages.{module_name(command)}")
        s = _subparser(sub, command, stage.HELP, stage.EXAMPLE)
        build(s, stage.OPTIONS)
        s.set_defaults(func=stage.run, gpu_option=getattr(stage, "GPU_OPTION", None),
                       speed_options=tuple(o.dest for o in stage.OPTIONS if o.speed))
    for command, (help_text, example, options) in USER_COMMANDS.items():
        s = _subparser(sub, command, help_text, example)
        build(s, options)
        s.set_defaults(func=globals()[f"cmd_{command}"], speed_options=(),
                       gpu_option="device" if command == "explain" else None)
    return p


def parse(argv: list[str]) -> argparse.Namespace:
    """The parsed command line, with the speed-only options filled in (--speed FILE, else defaults)."""
    options = argv[: argv.index("--")] if "--" in argv else argv
    if "--quiet" in options:  # accepted after the subcommand too (not after `--`: a file may be so named)
        argv = ["--quiet", *[a for a in options if a != "--quiet"], *argv[len(options):]]
    args = build_parser().parse_args(argv)
    plumbing.apply_speed_file(args, args.speed_options)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    plumbing.claim_gpu(args)
    try:
        args.func(args)
    except (FileNotFoundError, ModelError, CacheMismatch) as err:  # a wrong path, layer, weights or cache: named
        raise SystemExit(f"error: {err}") from None


if __name__ == "__main__":
    main()
