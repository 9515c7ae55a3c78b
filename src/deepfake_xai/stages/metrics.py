"""Stage metrics: one table cell, the metrics of one (model, train set, test set) from its predictions,
with bootstrap intervals."""

from __future__ import annotations

import argparse

from .spec import Option

HELP = "metrics of one table cell from its predictions"
EXAMPLE = ("deepfake-xai metrics --predictions predictions/mnasnet_100/presocial/twitter.parquet "
           "--out metrics/mnasnet_100/presocial/twitter.json")
OPTIONS = (
    Option("--predictions", "the cell's predictions (Parquet)", required=True),
    Option("--out", "the cell's metrics (JSON)", required=True),
    Option("--threshold", "P(fake) at or above which an image is predicted fake", type=float, default=0.5,
           config="evaluate.threshold"),
    Option("--bootstrap", "bootstrap resamples of the 95% intervals", type=int, default=1000,
           config="evaluate.bootstrap"),
    Option("--seed", "bootstrap seed", type=int, default=0, config="evaluate.seed"),
    Option("--model", "recorded in the JSON"),
    Option("--train-set", "recorded in the JSON"),
    Option("--test-set", "recorded in the JSON"),
    Option("--test-dataset", "recorded in the JSON: the dataset of a cross-dataset cell's test set"),
)


def run(args: argparse.Namespace) -> None:
    from ..environment import versions
    from ..evaluate import read_prediction_arrays
    from ..io import write_json
    from ..metrics import compute_metrics

    preds = read_prediction_arrays(args.predictions)
    metrics = compute_metrics(preds, threshold=args.threshold, n_boot=args.bootstrap, seed=args.seed)
    metrics.update({k: v for k, v in (("model", args.model), ("train_set", args.train_set),
                                      ("test_set", args.test_set), ("test_dataset", args.test_dataset)) if v})
    metrics["versions"] = versions()
    write_json(args.out, metrics)
    ci = metrics["ci95"]["accuracy"]
    ci_txt = f" (95% CI {ci[0]:.4f}-{ci[1]:.4f})" if ci else ""
    print(f"accuracy {metrics['accuracy']:.4f}{ci_txt}, F1 {metrics['f1']:.4f}, n={metrics['n']} -> {args.out}")
