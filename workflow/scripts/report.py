"""Snakemake/DVC entry point: `deepfake-xai report` (see `deepfake-xai report --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("report")
