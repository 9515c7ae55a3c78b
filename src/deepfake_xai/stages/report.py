"""Stage report: the paper's Tables 1-4 beside this run's numbers, figures beyond the paper, and a
README saying what ran (config files and their hashes, missing cells)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .spec import Option, json_object


def _grid_models(config: dict) -> list[str]:
    from ..config import grid_axes

    return grid_axes(config)[0]


def _grid_train_sets(config: dict) -> list[str]:
    from ..config import grid_axes

    return grid_axes(config)[1]


def _families(config: dict) -> dict[str, str]:
    """Each generator's family (real, gan, diffusion, other): the known ones and every dataset's own."""
    from ..names import generators

    out = {}
    for data in [config["data"], *(t["data"] for t in (config.get("transfer") or {}).values())]:
        out.update({name: g.family for name, g in generators(data.get("generators")).items()})
    return dict(sorted(out.items()))


HELP = "the paper's tables beside this run's, figures and a README"
EXAMPLE = ("deepfake-xai report --metrics results/synthetic/metrics/*/*/*.json --train "
           "results/synthetic/models/*/*/train.json --out-dir reports/synthetic --dataset synthetic "
           "--models mnasnet_100 --train-sets presocial --test-sets presocial twitter")
OPTIONS = (
    Option("--metrics", "metrics JSON files (the cells to report)", nargs="*", default=[]),
    Option("--train", "train.json files (log.csv beside each)", nargs="*", default=[]),
    Option("--out-dir", "e.g. reports/synthetic", required=True),
    Option("--dataset", "the dataset's name", required=True, config="dataset"),
    Option("--models", "models with a matrix/confusion figure", nargs="+", required=True, config=_grid_models),
    Option("--train-sets", "the grid's train sets", nargs="+", required=True, config=_grid_train_sets),
    Option("--test-sets", "the configured test sets", nargs="+", required=True, config="test_sets"),
    Option("--config", "the config files the run merged, in order, recorded with their hashes in the README",
           nargs="*", default=[]),
    Option("--results", "results folder named for missing cells (default results/DATASET)"),
    Option("--explain", "heatmap outputs to link from the README", nargs="*", default=[]),
    Option("--paper", "the paper's tables CSV (default: the copy shipped in the package)"),
    Option("--transfer", "cross-dataset metrics files (the transfer table)", nargs="*", default=[]),
    Option("--predictions", "test parts' predictions files, each at .../<model>/<train_set>/<part>.parquet "
           "(the calibration table's rates and McNemar pairs)", nargs="*", default=[]),
    Option("--validation", "pre-social validation predictions, each at .../<model>/<train_set>/validation.parquet "
           "(the calibration table's chosen threshold)", nargs="*", default=[]),
    Option("--families-json", "each generator's family, for the per-generator table", type=json_object,
           config=_families),
)


def run(args: argparse.Namespace) -> None:
    from ..report.build import build_report
    from ..report.tables import ReportInputError

    try:
        written = build_report(metrics_files=args.metrics, train_files=args.train, out_dir=args.out_dir,
                               dataset=args.dataset, models=args.models, train_sets=args.train_sets,
                               test_sets=args.test_sets, config_files=args.config, results_dir=args.results,
                               explain_files=args.explain, paper_csv=args.paper, transfer_files=args.transfer,
                               families=args.families_json or {}, prediction_files=args.predictions,
                               validation_files=args.validation)
    except ReportInputError as err:
        raise SystemExit(f"error: {err}") from None
    print(f"{len(written)} report files -> {args.out_dir} (start at {Path(args.out_dir) / 'README.md'})")
