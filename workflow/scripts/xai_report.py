"""Snakemake/DVC entry point: `deepfake-xai xai-report` (see `deepfake-xai xai-report --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("xai-report")
