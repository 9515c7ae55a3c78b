"""Snakemake/DVC entry point: `deepfake-xai manifest` (see `deepfake-xai manifest --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("manifest")
