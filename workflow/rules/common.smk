# Configuration validation and one helper per input decision, shared by every rule file. Paths come
# from deepfake_xai.paths, each stage's options from its module (deepfake_xai.stages.<stage>).
import json
from pathlib import Path
import re
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from deepfake_xai import config as dxcfg
from deepfake_xai import paths, sets
from deepfake_xai.registry import UnknownModelError, check_arch
from deepfake_xai.stages import wiring


# Fails before any job runs, naming the key and the value; fills in the schema's defaults.
def _validate_config() -> None:
    """Schema validation with a one-line message (key path, value, rule) instead of the schema dump."""
    import jsonschema

    try:
        validate(config, "../schemas/config.schema.yaml")
    except WorkflowError as err:
        cause = err.__context__
        if not isinstance(cause, jsonschema.ValidationError):
            raise
        key = ".".join(str(p) for p in cause.absolute_path) or "(top level)"
        raise WorkflowError(
            f"Invalid config at {key}: {cause.message} "
            "(the keys and their meaning: workflow/schemas/config.schema.yaml)"
        ) from None


_validate_config()
try:
    dxcfg.check(config)  # also fills the defaults that come from sets.py and explain/catalog.py
    for _arch in dxcfg.unknown_archs(config):
        try:
            check_arch(_arch)
        except UnknownModelError as _err:
            raise ValueError(f"models: {_err}") from None
except ValueError as _err:
    raise WorkflowError(f"Invalid config: {_err}") from None

DATASET = config["dataset"]
RESULTS = paths.results(DATASET)
LOGS = paths.logs(DATASET)
BENCH = paths.benchmarks(DATASET)
REPORTS = paths.reports(DATASET)
# The interpreter running Snakemake runs the stages too (python -m deepfake_xai; no reliance on PATH).
PY = shlex.quote(sys.executable)
if "CONDA" in {m.name for m in workflow.deployment_settings.deployment_method}:
    raise WorkflowError(
        "--software-deployment-method conda is not supported: every job runs with the Python that runs "
        "Snakemake. Create the environment once (conda env create -f environment.yml), activate it "
        "(conda activate deepfake-xai) and run snakemake there without that option"
    )

# Every dataset the DAG reads: the main one (trained on) and the transfer datasets (tested on only).
# The data rules (data.smk, the cache rule) serve all of them through the {dataset} wildcard, each
# with its own data section (dxcfg.dataset_view).
DATASETS = [DATASET, *config["transfer"]]
VIEWS = {name: dxcfg.dataset_view(config, name) for name in DATASETS}


def data_cfg(dataset: str) -> dict:
    return VIEWS[dataset]["data"]


def data_root(dataset: str) -> str:
    """The dataset's root: data.root, else where its archives are extracted."""
    return data_cfg(dataset)["root"] or paths.generated_root(dataset)


def data_generated(dataset: str) -> bool:
    return data_cfg(dataset)["root"] is None


for _name in DATASETS:
    _key = "data" if _name == DATASET else f"transfer.{_name}.data"
    if not data_generated(_name) and not Path(data_root(_name)).is_dir():
        raise WorkflowError(
            f"Invalid config: {_key}.root={data_root(_name)!r} is not a folder; point it at your copy of the "
            "dataset (for TrueFace and TrueFake the folder holding TrueFace_PreSocial/ and TrueFace_PostSocial/)"
        )
    if data_generated(_name) and data_cfg(_name)["source"] != "synthetic" and not data_cfg(_name)["download"]:
        raise WorkflowError(
            f"Invalid config: {_key}.source is {data_cfg(_name)['source']} but neither {_key}.root (an existing "
            f"copy) nor {_key}.download (archive URLs and SHA-256 sums) is set"
        )

ARCHIVES = {name: dxcfg.download_archives(VIEWS[name]) for name in DATASETS}
SYNTHESIZED = [n for n in DATASETS if data_generated(n) and data_cfg(n)["source"] == "synthetic"]
DOWNLOADED = [n for n in DATASETS if data_generated(n) and data_cfg(n)["source"] != "synthetic"]
# Kept for the rules that read the main dataset only (training, explanations).
DATA_CFG = config["data"]
DATA_ROOT = data_root(DATASET)

# The code each rule's jobs run, as a parameter: Snakemake tracks no code of a shell rule by itself,
# and re-runs a job whose parameters changed. code_digest(stage) hashes the source that decides
# what the stage writes (its module in deepfake_xai/stages/ and the package modules it imports,
# package data), so an edit re-runs exactly the jobs that run the edited code; touching, moving or
# reinstalling does not.
from deepfake_xai.provenance import code_digest


def stage_options(stage: str, dataset: str | None = None) -> str:
    """The stage's options that come from the config (of ``dataset``: the main one by default), as
    shell words (declared in its module)."""
    return wiring.command_line(stage, VIEWS[dataset or DATASET])


def dataset_options(stage: str):
    """A params function: the stage's options for the job's {dataset}."""
    return lambda wc: stage_options(stage, wc.dataset)


def stage_speed(stage: str, option: str, model: str | None = None):
    """A speed-only value of the stage (threads, workers): a rule's threads or resources, never a param."""
    return wiring.speed_value(stage, config, option, model)


def manifest_inputs(wildcards) -> dict[str, str]:
    """The dataset root, and for the csv source its table (default labels.csv in the root)."""
    data = data_cfg(wildcards.dataset)
    inputs = {"root": data_root(wildcards.dataset)}
    if data["source"] == "csv" and data["table"]:
        inputs["table"] = data["table"]
    return inputs


def archive_files(wildcards) -> list[str]:
    """The archives a generated dataset is extracted from."""
    name = wildcards.dataset
    names = ["synthetic.tar"] if data_cfg(name)["source"] == "synthetic" else list(ARCHIVES[name])
    return [paths.archive(name, a) for a in names]


MODELS = list(config["models"])
PAIRS = dxcfg.training_pairs(config)
# what each training job predicts: the parts the configured test sets use (+ "combined", pooled)
PREDICTED_PARTS = dxcfg.required_test_parts(config)
PREDICTED_SETS = dxcfg.predicted_sets(config)
COMPUTE = config["compute"]
PRETRAINED = dxcfg.pretrained_models(config)  # models that start from resources/pretrained/{model}.safetensors


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),
    model="|".join(re.escape(m) for m in MODELS),
    train_set="|".join(dxcfg.train_sets_of(config)),
    test_set="|".join(dxcfg.test_sets_of(config)),
    part="|".join(dict.fromkeys(p for v in VIEWS.values() for p in v["data"]["parts"])),
    cache=r"(native|r\d+)_c\d+",


def train_launcher() -> str:
    """`python -m deepfake_xai`, or torchrun with one process per GPU (compute.gpus_per_job)."""
    n = COMPUTE["gpus_per_job"]
    if n <= 1:
        return f"{PY} -m deepfake_xai"
    torchrun = shlex.quote(str(Path(sys.executable).with_name("torchrun")))
    return f"{torchrun} --standalone --nproc_per_node {n} -m deepfake_xai"


def train_rows(wildcards) -> list[str]:
    """A protocol train set's rows (its part and the generators it trains on) as a flag; none otherwise."""
    rows = dxcfg.protocol_rows(config, wildcards.train_set)
    return [] if rows is None else ["--train-rows", json.dumps(rows, sort_keys=True)]


def settings_json(wildcards) -> str:
    """The model's resolved settings: train defaults + its overrides. Only this model's values, so
    changing one model's hyperparameter re-runs that model's jobs alone."""
    return json.dumps(dxcfg.without_speed_keys(dxcfg.model_settings(config, wildcards.model)), sort_keys=True)


def pretrained_inputs(wildcards) -> dict[str, str]:
    """The pretrained backbone a model starts from (the pretrained rule's output), if it is pretrained."""
    return {"init": paths.pretrained(wildcards.model)} if wildcards.model in PRETRAINED else {}


def init_weights(wildcards, input) -> list[str]:
    return ["--init-weights", input.init] if "init" in input.keys() else []


def pretrained_settings_json(wildcards) -> str:
    """What the pretrained backbone depends on (arch, model_args, source, checksum) and nothing else."""
    return json.dumps(dxcfg.pretrained_settings(dxcfg.model_settings(config, wildcards.model)), sort_keys=True)


def cache_name(model: str) -> str:
    return dxcfg.cache_name(dxcfg.model_settings(config, model))


def cache_inputs(wildcards) -> dict[str, str]:
    """The image cache a model reads (models with the same preprocessing share one)."""
    name = cache_name(wildcards.model)
    return {"cache_npy": paths.cache_array(DATASET, name), "cache_index": paths.cache_index(DATASET, name)}


def cache_params(wildcards) -> dict[str, str]:
    """resize and center_crop of a cache, read back from its file name."""
    m = re.fullmatch(r"(native|r(\d+))_c(\d+)", wildcards.cache)
    return {"resize": m.group(2) or "none", "center_crop": m.group(3)}


def metrics_files() -> list[str]:
    return [paths.metrics(DATASET, m, tr, te) for m, tr, te in dxcfg.cells(config)]


def part_prediction_files() -> list[str]:
    """The predictions of the reported cells (the calibration table's rates and McNemar pairs)."""
    return [paths.predictions(DATASET, m, tr, te) for m, tr, te in dxcfg.cells(config) if te in PREDICTED_SETS]


def validation_files() -> list[str]:
    """Each trained model's pre-social validation predictions (the calibration table's chosen threshold)."""
    return [paths.validation_predictions(DATASET, m, tr) for m, tr in PAIRS]


EXPLAIN_CELLS = dxcfg.explain_cells(config)
# Scheduling: the explanation jobs run as soon as their model is trained, and the trainings they
# wait for go first, so that explaining never waits at the end of a run for the last trainings
# (nor the trainings for explaining): on two cores this keeps both busy until the report.
EXPLANATION_PRIORITY = 2
_EXPLAINED_PAIRS = {(m, tr) for m, tr, _ in EXPLAIN_CELLS}


def train_priority(wildcards) -> int:
    return int((wildcards.model, wildcards.train_set) in _EXPLAINED_PAIRS)


def montage_models(train_set: str, test_set: str) -> list[str]:
    return [m for m, tr, te in EXPLAIN_CELLS if (tr, te) == (train_set, test_set)]


def maps_files() -> list[str]:
    return [paths.maps(DATASET, m, tr, te) for m, tr, te in EXPLAIN_CELLS]


def explain_files() -> list[str]:
    """Heatmap maps per explained cell, montages per (train set, test set), actmax per model."""
    pairs = sorted({(tr, te) for _, tr, te in EXPLAIN_CELLS})
    montages = [paths.montages(DATASET, tr, te) for tr, te in pairs]
    actmax = sorted({paths.actmax(DATASET, m, tr) for m, tr, _ in EXPLAIN_CELLS})
    return maps_files() + montages + actmax


GRID_MODELS, GRID_TRAIN_SETS = dxcfg.grid_axes(config)


def paper_table_outputs(ext: str) -> list[str]:
    """The report's files of the paper's Tables 1-4 in one format."""
    return [paths.paper_table(DATASET, n, ext) for n in paths.PAPER_TABLES]


XAI = config["xai"]


def xai_files() -> list[str]:
    """Explanation-quality scores, one file per explained cell (none when xai.enabled is false)."""
    if not XAI["enabled"]:
        return []
    return [paths.xai_metrics(DATASET, m, tr, te) for m, tr, te in EXPLAIN_CELLS]


def spectrum_cache() -> dict[str, str]:
    """The image cache the frequency spectra are computed from: the first explained model's."""
    name = cache_name((EXPLAIN_CELLS or [(PAIRS[0][0],)])[0][0])
    return {"cache_npy": paths.cache_array(DATASET, name), "cache_index": paths.cache_index(DATASET, name)}


def xai_report_files() -> list[str]:
    return [paths.xai_report(DATASET, n) for n in paths.XAI_REPORT_FILES] if xai_files() else []


TRANSFER_CELLS = dxcfg.transfer_cells(config)


def transfer_cache(wildcards) -> dict[str, str]:
    """The transfer dataset's cache in the model's preprocessing."""
    name = cache_name(wildcards.model)
    return {"cache_npy": paths.cache_array(wildcards.target, name),
            "cache_index": paths.cache_index(wildcards.target, name)}


def transfer_files() -> list[str]:
    """Every cross-dataset cell (transfer: in the config)."""
    return [paths.transfer_metrics(DATASET, t, m, tr, te) for t, m, tr, te in TRANSFER_CELLS]


def all_targets() -> list[str]:
    """What `snakemake` with no target builds: every stage's final files for this config."""
    return [paths.manifest(DATASET), *metrics_files(), *transfer_files(), *explain_files(), *xai_files(),
            *xai_report_files()]
