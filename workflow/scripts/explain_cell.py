"""Snakemake/DVC entry point: `deepfake-xai explain-cell` (see `deepfake-xai explain-cell --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("explain-cell")
