"""Snakemake/DVC entry point: `deepfake-xai actmax` (see `deepfake-xai actmax --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("actmax")
