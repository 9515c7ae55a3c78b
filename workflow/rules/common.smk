# Configuration validation and helper functions shared by every rule file.
import json
import re
from pathlib import Path
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from deepfake_xai import config as dxcfg
from deepfake_xai.registry import UnknownModelError, check_arch

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
    dxcfg.check(config)
    for _arch in dxcfg.unknown_archs(config):
        try:
            check_arch(_arch)
        except UnknownModelError as _err:
            raise ValueError(f"models: {_err}") from None
except ValueError as _err:
    raise WorkflowError(f"Invalid config: {_err}") from None

DATASET = config["dataset"]
RESULTS = f"results/{DATASET}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
# The interpreter running Snakemake runs the scripts too (no reliance on PATH). So the rules' `conda:`
# environment (environment.yml, which documents the software) is the one to run Snakemake in, not
# one Snakemake builds per rule: a job there would still run this interpreter.
PY = shlex.quote(sys.executable)
if "CONDA" in {m.name for m in workflow.deployment_settings.deployment_method}:
    raise WorkflowError(
        "--software-deployment-method conda is not supported: every job runs with the Python that runs "
        "Snakemake. Create the environment once (conda env create -f environment.yml), activate it "
        "(conda activate deepfake-xai) and run snakemake there without that option"
    )

DATA_CFG = config["data"]
DATA_ROOT = DATA_CFG["root"] or f"resources/{DATASET}/data"
DATA_GENERATED = DATA_CFG["root"] is None

if not DATA_GENERATED and not Path(DATA_ROOT).is_dir():
    raise WorkflowError(
        f"Invalid config: data.root={DATA_ROOT!r} is not a folder; point it at your TrueFace copy "
        "(the folder holding TrueFace_PreSocial/ and TrueFace_PostSocial/)"
    )
if DATA_GENERATED and DATA_CFG["source"] == "trueface" and not DATA_CFG["download"]:
    raise WorkflowError(
        "Invalid config: data.source is trueface but neither data.root (an existing copy) nor "
        "data.download (archive URLs and SHA-256 sums) is set"
    )

ARCHIVES = dxcfg.download_archives(config)

# The code each rule's jobs run, as a parameter: Snakemake tracks no code of a shell rule by itself,
# and re-runs a job whose parameters changed. code_digest(subcommand) hashes the source that decides
# what the subcommand writes (its cli.py function, the package modules it imports, package data), so
# an edit re-runs exactly the jobs that run the edited code; touching, moving or reinstalling does not.
from deepfake_xai.provenance import code_digest


def archive_files() -> list[str]:
    """The archives a generated dataset is extracted from."""
    names = ["synthetic.tar"] if DATA_CFG["source"] == "synthetic" else list(ARCHIVES)
    return [f"resources/{DATASET}/archives/{name}" for name in names]


def as_json(obj) -> str:
    """A config section as one JSON argument (quoted with :q in shell commands)."""
    return json.dumps(obj, sort_keys=True)


MODELS = list(config["models"])
PAIRS = dxcfg.training_pairs(config)
PARTS = list(dxcfg.TEST_PARTS)
# what each training job predicts: the parts the configured test sets use (+ "combined", pooled)
PREDICTED_PARTS = dxcfg.required_test_parts(config)
PREDICTED_SETS = dxcfg.predicted_sets(config)
COMPUTE = config["compute"]


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    train_set="presocial|facebook|telegram|twitter|combined",
    part="|".join(PARTS),
    cache=r"(native|r\d+)_c\d+",


def train_launcher() -> str:
    """The interpreter for training jobs, or torchrun with one process per GPU (compute.gpus_per_job)."""
    n = COMPUTE["gpus_per_job"]
    if n <= 1:
        return PY
    return f"{shlex.quote(str(Path(sys.executable).with_name('torchrun')))} --standalone --nproc_per_node {n}"


def settings_json(wildcards) -> str:
    """The model's resolved settings: train defaults + its overrides. Only this model's values, so
    changing one model's hyperparameter re-runs that model's jobs alone."""
    return as_json(dxcfg.without_speed_keys(dxcfg.model_settings(config, wildcards.model)))


def cache_inputs(wildcards) -> dict[str, str]:
    """The image cache a model reads (models with the same preprocessing share one)."""
    name = dxcfg.cache_name(dxcfg.model_settings(config, wildcards.model))
    return {"cache_npy": f"{RESULTS}/cache/{name}.npy", "cache_index": f"{RESULTS}/cache/{name}.parquet"}


def cache_params(wildcards) -> dict[str, str]:
    """resize and center_crop of a cache, read back from its file name."""
    m = re.fullmatch(r"(native|r(\d+))_c(\d+)", wildcards.cache)
    return {"resize": m.group(2) or "none", "center_crop": m.group(3)}


def model_dir(model: str, train_set: str) -> str:
    return f"{RESULTS}/models/{model}/{train_set}"


def metrics_files() -> list[str]:
    return [f"{RESULTS}/metrics/{m}/{tr}/{te}.json" for m, tr, te in dxcfg.cells(config)]


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


def explain_files() -> list[str]:
    """Heatmap maps per explained cell, montages per (train set, test set), actmax per model."""
    maps = [f"{RESULTS}/heatmaps/{m}/{tr}/{te}/maps.npz" for m, tr, te in EXPLAIN_CELLS]
    pairs = sorted({(tr, te) for _, tr, te in EXPLAIN_CELLS})
    montages = [f"{RESULTS}/montages/{tr}/{te}" for tr, te in pairs]
    actmax = sorted({f"{RESULTS}/heatmaps/{m}/{tr}/actmax.png" for m, tr, _ in EXPLAIN_CELLS})
    return maps + montages + actmax


REPORTS = f"reports/{DATASET}"
GRID_MODELS, GRID_TRAIN_SETS = dxcfg.grid_axes(config)


def paper_table_outputs(ext: str) -> list[str]:
    """The report's files of the paper's Tables 1-4 in one format."""
    return [f"{REPORTS}/tables/table{n}.{ext}" for n in (1, 2, 3, 4)]


XAI = config["xai"]


def xai_files() -> list[str]:
    """Explanation-quality scores, one file per explained cell (none when xai.enabled is false)."""
    if not XAI["enabled"]:
        return []
    return [f"{RESULTS}/xai_metrics/{m}/{tr}/{te}.json" for m, tr, te in EXPLAIN_CELLS]


def spectrum_cache() -> dict[str, str]:
    """The image cache the frequency spectra are computed from: the first explained model's."""
    model = (EXPLAIN_CELLS or [(PAIRS[0][0],)])[0][0]
    name = dxcfg.cache_name(dxcfg.model_settings(config, model))
    return {"cache_npy": f"{RESULTS}/cache/{name}.npy", "cache_index": f"{RESULTS}/cache/{name}.parquet"}


def xai_report_files() -> list[str]:
    return [] if not xai_files() else [f"{REPORTS}/xai/{n}" for n in ("ranking.md", "ranking.csv", "priors.png",
                                                                      "spectra.png", "robustness.png")]


def all_targets() -> list[str]:
    """What `snakemake` with no target builds: every stage's final files for this config."""
    return [f"{RESULTS}/manifest.parquet", *metrics_files(), *explain_files(), *xai_files(), *xai_report_files()]
