"""The path contract, the DAG's API: every file a stage writes, derived here once. The Snakefile
calls these with wildcard patterns (``"{model}"``) and the DVC generator with names, so both tools
build the same files.
"""

from __future__ import annotations

XAI_REPORT_FILES = ("ranking.md", "ranking.csv", "ranking.png", "controlled.md", "controlled.csv", "replacements.csv", "priors.png",
                    "spectra.png", "robustness.png", "cascade.png", "sharing_drift.csv", "sharing_drift.png")
PAPER_TABLES = (1, 2, 3, 4)


def resources(dataset: str) -> str:
    return f"resources/{dataset}"


def archive(dataset: str, name: str) -> str:
    """A raw archive: downloaded, or the generated synthetic tar (DVC versions these)."""
    return f"resources/{dataset}/archives/{name}"


def generated_root(dataset: str) -> str:
    """Where the archives are extracted when the config names no data.root."""
    return f"resources/{dataset}/data"


def pretrained(model: str) -> str:
    """A model's pretrained backbone (the pretrained stage's output, read by its training jobs), shared
    by every dataset; its record (source, SHA-256, what fitted) is beside it as ``.json``."""
    return f"resources/pretrained/{model}.safetensors"


def pretrained_record(model: str) -> str:
    return f"resources/pretrained/{model}.json"


def results(dataset: str) -> str:
    return f"results/{dataset}"


def manifest(dataset: str) -> str:
    return f"results/{dataset}/manifest.parquet"


def rejected(dataset: str) -> str:
    return f"results/{dataset}/rejected.parquet"


def manifest_summary(dataset: str) -> str:
    return f"results/{dataset}/manifest_summary.csv"


def cache_array(dataset: str, cache: str) -> str:
    return f"results/{dataset}/cache/{cache}.npy"


def cache_index(dataset: str, cache: str) -> str:
    return f"results/{dataset}/cache/{cache}.parquet"


def model_dir(dataset: str, model: str, train_set: str) -> str:
    return f"results/{dataset}/models/{model}/{train_set}"


def weights(dataset: str, model: str, train_set: str) -> str:
    return f"{model_dir(dataset, model, train_set)}/model.safetensors"


def train_log(dataset: str, model: str, train_set: str) -> str:
    return f"{model_dir(dataset, model, train_set)}/log.csv"


def train_summary(dataset: str, model: str, train_set: str) -> str:
    return f"{model_dir(dataset, model, train_set)}/train.json"


def validation_predictions(dataset: str, model: str, train_set: str) -> str:
    """The trained model's predictions of the pre-social validation images (the calibration report's threshold)."""
    return f"{model_dir(dataset, model, train_set)}/validation.parquet"


def predictions_dir(dataset: str, model: str, train_set: str) -> str:
    return f"results/{dataset}/predictions/{model}/{train_set}"


def predictions(dataset: str, model: str, train_set: str, test_set: str) -> str:
    return f"{predictions_dir(dataset, model, train_set)}/{test_set}.parquet"


def metrics(dataset: str, model: str, train_set: str, test_set: str) -> str:
    """One table cell."""
    return f"results/{dataset}/metrics/{model}/{train_set}/{test_set}.json"


def heatmaps_dir(dataset: str, model: str, train_set: str, test_set: str) -> str:
    return f"results/{dataset}/heatmaps/{model}/{train_set}/{test_set}"


def maps(dataset: str, model: str, train_set: str, test_set: str) -> str:
    return f"{heatmaps_dir(dataset, model, train_set, test_set)}/maps.npz"


def panels(dataset: str, model: str, train_set: str, test_set: str) -> str:
    return f"{heatmaps_dir(dataset, model, train_set, test_set)}/panels"


def actmax(dataset: str, model: str, train_set: str) -> str:
    return f"results/{dataset}/heatmaps/{model}/{train_set}/actmax.png"


def montages(dataset: str, train_set: str, test_set: str) -> str:
    return f"results/{dataset}/montages/{train_set}/{test_set}"


def xai_metrics(dataset: str, model: str, train_set: str, test_set: str) -> str:
    return f"results/{dataset}/xai_metrics/{model}/{train_set}/{test_set}.json"


def reports(dataset: str) -> str:
    return f"reports/{dataset}"


def xai_report(dataset: str, name: str = "") -> str:
    """The explanation-quality report folder, or one of its files (XAI_REPORT_FILES)."""
    return f"reports/{dataset}/xai" + (f"/{name}" if name else "")


def paper_table(dataset: str, number: int, ext: str) -> str:
    return f"reports/{dataset}/tables/table{number}.{ext}"


def logs(dataset: str) -> str:
    return f"results/{dataset}/logs"


def benchmarks(dataset: str) -> str:
    return f"results/{dataset}/benchmarks"


def transfers(dataset: str) -> str:
    """Every cross-dataset cell of the models trained on ``dataset``."""
    return f"results/{dataset}/transfer"


def transfer_dir(dataset: str, target: str) -> str:
    """The cross-dataset cells of models trained on ``dataset``, tested on the transfer dataset ``target``."""
    return f"{transfers(dataset)}/{target}"


def transfer_predictions(dataset: str, target: str, model: str, train_set: str, test_set: str) -> str:
    return f"{transfer_dir(dataset, target)}/predictions/{model}/{train_set}/{test_set}.parquet"


def transfer_metrics(dataset: str, target: str, model: str, train_set: str, test_set: str) -> str:
    """One cross-dataset cell."""
    return f"{transfer_dir(dataset, target)}/metrics/{model}/{train_set}/{test_set}.json"
