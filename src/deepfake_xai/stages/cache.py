"""Stage cache: every manifest image decoded once, resized and center-cropped, into one uint8
memory-mapped array, so that no epoch decodes an image again."""

from __future__ import annotations

import argparse

from .spec import Option, optional

HELP = "decode every manifest image once into a uint8 memory-mapped array"
EXAMPLE = ("deepfake-xai cache --manifest manifest.parquet --dataset synthetic --root resources/synthetic/data "
           "--out cache/native_c64.npy --index cache/native_c64.parquet --center-crop 64")
GPU_OPTION = "jpeg_device"
OPTIONS = (
    Option("--manifest", "manifest.parquet", required=True),
    Option("--dataset", "the dataset name the manifest must carry", required=True, config="dataset"),
    Option("--root", "dataset root the manifest paths are relative to", required=True),
    Option("--out", "cache array (.npy)", required=True),
    Option("--index", "cache index (.parquet)", required=True),
    Option("--resize", "resize the shorter side to this first (none: keep the native size)", type=optional(int)),
    Option("--center-crop", "side of the cached center crop", type=int, required=True),
    Option("--workers", "processes decoding the images (default: 1)", type=int, speed="compute.cache_workers"),
    Option("--jpeg-device", "decode RGB/grayscale JPEGs with torchvision on this device (cuda: nvJPEG); "
           "default: PIL for every file", type=optional(str), config="compute.cache_jpeg_device"),
)


def run(args: argparse.Namespace) -> None:
    from ..data.cache import build_cache
    from ..data.manifest import read_manifest

    manifest = read_manifest(args.manifest, args.dataset)
    n = build_cache(manifest, args.root, args.out, args.index, resize=args.resize,
                    center_crop=args.center_crop, workers=args.workers or 1, progress=not args.quiet,
                    jpeg_device=args.jpeg_device)
    print(f"cached {n} images ({args.center_crop} px, resize={args.resize}, JPEG decoder "
          f"{'torchvision on ' + args.jpeg_device if args.jpeg_device else 'PIL'}) in {args.out}")
