"""Snakemake/DVC entry point: `deepfake-xai train` (see `deepfake-xai train --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("train")
