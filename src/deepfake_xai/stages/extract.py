"""Stage extract: the dataset's archives unpacked safely (no path escapes the root) into one dataset root."""

from __future__ import annotations

import argparse

from .spec import Option

HELP = "safely extract archives into a dataset root"
EXAMPLE = "deepfake-xai extract resources/trueface/archives --out resources/trueface/data"
OPTIONS = (
    Option("archives", "archive files, or folders holding them", nargs="+"),
    Option("--out", "the dataset root to write", required=True),
)


def run(args: argparse.Namespace) -> None:
    from ..data.archive import extract_all, list_archives

    archives = list_archives(args.archives)
    print(f"extracted {len(archives)} archive(s) into {extract_all(archives, args.out, show=not args.quiet)}")
