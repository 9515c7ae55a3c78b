"""Snakemake/DVC entry point: `deepfake-xai predict` (see `deepfake-xai predict --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("predict")
