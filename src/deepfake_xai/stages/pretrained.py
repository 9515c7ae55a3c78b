"""Stage pretrained: one model's pretrained backbone fetched once (timm's hub, a URL with SHA-256, or
a local file), verified and stored as safetensors; training jobs read only that file."""

from __future__ import annotations

import argparse

from .spec import Option, json_object

HELP = "fetch a model's pretrained backbone weights once, as safetensors"
EXAMPLE = ("deepfake-xai pretrained --settings-json '{\"arch\": \"resnet50\", \"pretrained_from\": "
           "\"https://example.org/r50.pth\", \"pretrained_sha256\": \"<64 hex>\"}' "
           "--out resources/pretrained/resnet50.safetensors")
OPTIONS = (
    Option("--settings-json", "the model's arch, model_args, pretrained_from and pretrained_sha256 "
           "(pretrained_from null: timm's default weights of arch)", type=json_object, required=True),
    Option("--out", "the safetensors file to write (its record goes beside it as .json)", required=True),
)


def run(args: argparse.Namespace) -> None:
    from ..pretrained import fetch

    s = args.settings_json
    record = fetch(s["arch"], args.out, source=s.get("pretrained_from"), sha256=s.get("pretrained_sha256"),
                   model_args=s.get("model_args"), progress=not args.quiet)
    print(f"{args.out}: {record['tensors']} tensors of {record['arch']} from {record['source']} ({record['kind']}); "
          f"sha256 {record['sha256']}")
    if record["missing"]:
        print(f"warning: {len(record['missing'])} backbone tensor(s) not in the source keep their random "
              f"initialization: {', '.join(record['missing'][:8])}")
