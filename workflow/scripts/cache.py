"""Snakemake/DVC entry point: `deepfake-xai cache` (see `deepfake-xai cache --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("cache")
