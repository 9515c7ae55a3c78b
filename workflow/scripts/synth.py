"""Snakemake/DVC entry point: `deepfake-xai synth` (see `deepfake-xai synth --help`)."""

from deepfake_xai.cli import run_subcommand

if __name__ == "__main__":
    run_subcommand("synth")
