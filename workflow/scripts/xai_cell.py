"""Snakemake/DVC entry point: `deepfake-xai xai-cell` (see `deepfake-xai xai-cell --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("xai-cell")
