"""Snakemake/DVC entry point: `deepfake-xai download` (see `deepfake-xai download --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("download")
