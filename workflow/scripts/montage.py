"""Snakemake/DVC entry point: `deepfake-xai montage` (see `deepfake-xai montage --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("montage")
