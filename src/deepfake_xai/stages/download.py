"""Stage download: one archive of the dataset, resumed across interruptions and verified by SHA-256."""

from __future__ import annotations

import argparse

from .spec import Option

HELP = "download one archive with resume and checksum"
EXAMPLE = "deepfake-xai download --url https://example.org/TrueFace_PreSocial.zip --sha256 <64 hex> --out archives/pre.zip"
OPTIONS = (
    Option("--url", "where the archive is", required=True),
    Option("--sha256", "its SHA-256 (the download is refused unless it matches)", required=True),
    Option("--out", "the archive file to write", required=True),
    Option("--retries", "attempts after a failed or cut transfer", type=int, default=5),
    Option("--backoff", "seconds before the first retry (doubles)", type=float, default=1.0),
)


def run(args: argparse.Namespace) -> None:
    from ..data.download import download

    path = download(args.url, args.out, args.sha256, retries=args.retries, backoff=args.backoff,
                    progress=not args.quiet)
    print(f"downloaded and verified {path}")
