"""Snakemake/DVC entry point: `deepfake-xai extract` (see `deepfake-xai extract --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("extract")
