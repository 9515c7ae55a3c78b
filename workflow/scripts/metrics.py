"""Snakemake/DVC entry point: `deepfake-xai metrics` (see `deepfake-xai metrics --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("metrics")
