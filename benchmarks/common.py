"""What the throughput benchmarks share: their common options and the device they run on."""

from __future__ import annotations

import argparse

import torch

from deepfake_xai.runtime import pick_device


def parser(doc: str | None, *, model: str, size: int, batch: int) -> argparse.ArgumentParser:
    """An argument parser with --model, --size, --batch, --device, --threads and --json."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=model)
    p.add_argument("--size", type=int, default=size, help="model input side")
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="CPU threads")
    p.add_argument("--json", help="also write the figures to this JSON file")
    return p


def device_of(args: argparse.Namespace) -> torch.device:
    """The device asked for, with the CPU thread count applied."""
    torch.set_num_threads(args.threads)
    return pick_device(args.device)
