"""How a stage's process runs, never what it writes: speed-only options from a ``--speed`` file, a GPU
slot per job on a multi-GPU machine, and a fast exit once every output is written."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def apply_speed_file(args: argparse.Namespace, speed_options: tuple[str, ...]) -> None:
    """Fill the speed options left unset on the command line from ``--speed FILE``. A value may be a
    mapping of the config's model names (``loader_workers: {vgg19: 2}``), looked up by ``--model``.
    A DVC stage's command names none of them: params.yaml's ``speed`` section, which no stage
    tracks, so that moving to a machine with more cores re-runs nothing."""
    path = getattr(args, "speed", None)
    if path:
        section = _speed_section(path, args.command)
        for dest in speed_options:
            value = section.get(dest)
            if getattr(args, dest) is not None or value is None:
                continue
            key = f"speed.{args.command}.{dest}"
            if isinstance(value, dict):
                if getattr(args, "model", None) not in value:
                    raise SystemExit(f"error: --speed {path}: {key} has no entry for model "
                                     f"{getattr(args, 'model', None)!r}; regenerate the file")
                value, key = value[args.model], f"{key}.{args.model}"
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SystemExit(f"error: --speed {path}: {key} must be a positive integer, not {value!r}")
            setattr(args, dest, value)
    if hasattr(args, "threads") and args.threads is None:
        args.threads = 1


def _speed_section(path: str, command: str) -> dict:
    import yaml

    try:
        speed = (yaml.safe_load(Path(path).read_text()) or {}).get("speed")
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"error: --speed {path}: cannot read it ({err})") from None
    if not isinstance(speed, dict):
        raise SystemExit(f"error: --speed {path}: no `speed` section; regenerate it with "
                         "`python workflow/scripts/dvc_params.py --config <your config>`")
    section = speed.get(command) or {}
    if not isinstance(section, dict):
        raise SystemExit(f"error: --speed {path}: speed.{command} must be a mapping of option names "
                         f"to values, not {section!r}")
    return section


def wants_gpu(args: argparse.Namespace) -> bool:
    """Whether this command needs a GPU slot: one that may run on a GPU (its ``gpu_option``, the
    device option, says where) on device auto or cuda; the cache only when it decodes JPEGs on CUDA.
    A device with an index (cuda:1) is the user's own choice of GPU: no slot, which would hide every
    other GPU."""
    option = getattr(args, "gpu_option", None)
    return option is not None and getattr(args, option, None) in ("auto", "cuda")


def claim_gpu(args: argparse.Namespace) -> None:
    """On a multi-GPU machine, give this job a GPU of its own (CUDA_VISIBLE_DEVICES)."""
    if wants_gpu(args):
        from ..gpus import assign_visible_device

        slot = assign_visible_device()
        if slot is not None:
            print(f"GPU slot {slot}: CUDA_VISIBLE_DEVICES={slot}", file=sys.stderr)


def exit_without_teardown() -> None:
    """End a finished job's process at once. Tearing the interpreter down (torch's, timm's and
    pandas' modules and a model, object by object) takes 0.5-2 s per job on a CPU, as long as a
    whole metrics job; every output is already written and closed (atomic renames). The atexit
    handlers still run and the streams are flushed; only the object-by-object cleanup is skipped."""
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
