"""Real Snakemake runs in a temporary copy of the workflow: one cell's jobs, the tiny grid end to
end, what re-runs after a config change, rebuilds from scratch, config errors, the paper config."""

import json
import os
import re
import shutil

import pandas as pd
import pytest
from conftest import REPO, copy_repo, run_snakemake

from deepfake_xai.calibration import best_threshold

pytestmark = pytest.mark.workflow


def planned_jobs(stdout: str) -> list[tuple[str, str]]:
    """(rule, first output) of every job a dry run plans."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", stdout):
        m = re.match(r"(?:local)?rule (\w+):", block.strip())
        if not m or m.group(1) == "all":
            continue
        out = re.search(r"output: ([^,\n]+)", block)
        jobs.append((m.group(1), out.group(1).strip() if out else ""))
    return sorted(jobs)


def test_one_cell_plans_exactly_the_jobs_it_needs(tmp_path):
    wd = copy_repo(tmp_path)
    cell = "results/synthetic/metrics/efficientnet_b2/telegram/twitter.json"
    jobs = planned_jobs(run_snakemake(wd, "-n", "--cores", "1", cell).stdout)
    assert jobs == sorted([
        ("cache", "results/synthetic/cache/native_c64.npy"),
        ("manifest", "results/synthetic/manifest.parquet"),
        ("metrics", cell),
        ("extract", "resources/synthetic/data"),
        ("synthesize", "resources/synthetic/archives/synthetic.tar"),
        ("train", "results/synthetic/models/efficientnet_b2/telegram/model.safetensors"),
    ])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny config run to completion once (2 models x 2 train sets x 5 test sets)."""
    wd = copy_repo(tmp_path_factory.mktemp("wf"), package=True)  # its own library: a test edits it
    shutil.copy(REPO / "tests" / "data" / "tiny.yaml", wd / "tiny.yaml")
    run_snakemake(wd, "--cores", "2", "--configfile", "tiny.yaml")
    return wd


def test_tiny_grid_builds_every_cell(tiny_run):
    cells = sorted(p.relative_to(tiny_run).as_posix() for p in (tiny_run / "results/tiny/metrics").rglob("*.json"))
    want = sorted(f"results/tiny/metrics/{m}/{tr}/{te}.json" for m in ("mnasnet_100", "efficientnet_b0")
                  for tr in ("presocial", "telegram")
                  for te in ("presocial", "facebook", "telegram", "twitter", "combined"))
    assert cells == want
    cell = json.loads((tiny_run / "results/tiny/metrics/mnasnet_100/presocial/combined.json").read_text())
    parts = [json.loads((tiny_run / f"results/tiny/metrics/mnasnet_100/presocial/{p}.json").read_text())
             for p in ("presocial", "facebook", "telegram", "twitter")]
    assert cell["n"] == sum(p["n"] for p in parts)  # combined is the pooled parts
    # its interval resamples source images (a source's platform copies together); a part's, images
    assert cell["bootstrap_unit"] == "source image" and {p["bootstrap_unit"] for p in parts} == {"image"}
    for key in ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc",
                "average_precision", "eer", "confusion_matrix", "ci95", "by_generator"):
        assert key in cell
    # what made each number: the packages' versions and the project's commit, in every cell and train.json
    from importlib.metadata import version
    summary = json.loads((tiny_run / "results/tiny/models/mnasnet_100/presocial/train.json").read_text())
    for record in (cell["versions"], summary["versions"]):
        assert {k: record[k] for k in ("torch", "timm", "numpy", "pillow", "grad-cam")} == {
            k: version(k) for k in ("torch", "timm", "numpy", "pillow", "grad-cam")}
        assert record["deepfake-xai"] and record["commit"]
    readme = (tiny_run / "reports/tiny/README.md").read_text()
    assert f"Trained with: torch {version('torch')}" in readme and f"timm {version('timm')}" in readme
    for rule in ("train", "metrics", "explain", "actmax", "montage"):
        assert any((tiny_run / "results/tiny/logs" / rule).rglob("*.log")), rule
    for rule in ("manifest", "cache", "synthesize", "report"):
        assert any((tiny_run / "results/tiny/logs").glob(f"{rule}*")), rule
    assert any((tiny_run / "results/tiny/benchmarks/train").rglob("*.tsv"))


def test_explain_stage_writes_maps_panels_montages_and_actmax(tiny_run):
    from deepfake_xai.explain.bulk import read_maps

    for model in ("mnasnet_100", "efficientnet_b0"):
        for test_set in ("presocial", "combined"):
            cell = tiny_run / f"results/tiny/heatmaps/{model}/presocial/{test_set}"
            maps = read_maps(cell / "maps.npz")
            assert len(maps["image_ids"]) == 4
            assert {"gradcam", "cam", "saliency", "guided_gradcam", "eigencam"} <= set(maps["maps"])
            assert sorted(p.name for p in (cell / "panels").glob("*.png")) == ["panel_00.png", "panel_01.png"]
        assert (tiny_run / f"results/tiny/heatmaps/{model}/presocial/actmax.png").stat().st_size > 0
    montages = {p.name for p in (tiny_run / "results/tiny/montages/presocial/presocial").iterdir()}
    assert {"gradcam.png", "cam.png", "guided_backprop.png"} <= montages


def test_explanation_quality_scores_and_ranking(tiny_run):
    for model in ("mnasnet_100", "efficientnet_b0"):
        for test_set in ("presocial", "combined"):
            scores = json.loads((tiny_run / f"results/tiny/xai_metrics/{model}/presocial/{test_set}.json").read_text())
            assert scores["n_images"] == 4 and scores["model"] == model
            # At 32 px these models end in a 1 x 1 feature map: the CAM family is flat, reported
            # but not scored; the pixel-level methods are scored.
            grad, sal = scores["methods"]["gradcam"], scores["methods"]["saliency"]
            assert grad["flat_maps"] and grad["deletion_auc"] is None and grad["sanity"] == "undetermined (flat maps)"
            assert not sal["flat_maps"]
            for key in ("deletion_auc", "insertion_auc", "road", "confidence_drop"):
                assert 0 <= sal[key]["mean"] <= 1 or key == "road", key
            assert sal["sanity"] in ("passes", "fails") or sal["sanity"].startswith("undetermined")
            # the removal curves under each configured replacement (tiny.yaml: black)
            assert set(sal["replacements"]) == {"black_deletion_auc", "black_insertion_auc"}
            rob = scores["robustness"]
            assert set(rob["jpeg"]) == {"50"} and set(rob["scale"]) == {"0.5"} and 0 <= rob["clean"] <= 1
    ranking = (tiny_run / "reports/tiny/xai/ranking.md").read_text()
    assert "| method | faithfulness rank | localization rank |" in ranking
    for m in ("saliency", "gradcam", "guided_backprop"):
        assert f"| {m} |" in ranking
    for fig in ("priors.png", "spectra.png", "robustness.png"):
        assert (tiny_run / "reports/tiny/xai" / fig).read_bytes()[:4] == b"\x89PNG"
    # the controlled check: the cells' controlled fakes scored beside the oracle and random maps
    scores = json.loads((tiny_run / "results/tiny/xai_metrics/mnasnet_100/presocial/presocial.json").read_text())
    ctrl = scores["controlled"]
    assert ctrl["n"] >= 1 and {"oracle", "random", "saliency"} <= set(ctrl["methods"])
    assert all(len(v) == ctrl["n"] for v in ctrl["methods"]["oracle"].values())
    assert ctrl["methods"]["oracle"]["pointing_game"] == [1.0] * ctrl["n"]
    table = (tiny_run / "reports/tiny/xai/controlled.csv").read_text().splitlines()
    assert table[0].startswith("method,pointing_game") and any(r.startswith("oracle,") for r in table)
    assert "Controlled check" in ranking and "# The controlled check" in (
        tiny_run / "reports/tiny/xai/controlled.md").read_text()
    assert {"black_deletion_auc", "twin_deletion_auc", "black_insertion_auc"} <= set(ctrl["methods"]["oracle"])
    assert len(ctrl["decided"]) == ctrl["n"]  # which pairs the region decides (the tiny models: few or none)
    repl = (tiny_run / "reports/tiny/xai/replacements.csv").read_text()
    assert "explained,black,saliency," in repl
    decided_anywhere = any(json.loads(p.read_text())["controlled"]["decided"].count(True)
                           for p in (tiny_run / "results/tiny/xai_metrics").rglob("*.json"))
    assert ("controlled,twin,oracle," in repl) == decided_anywhere
    assert "## Removal curves by replacement" in ranking
    # the cascading randomization: one step per block, from the head back to the stem
    casc = scores["cascade"]
    assert casc["n"] == 4 and casc["steps"][0] == "head" and casc["steps"][-1] == "stem"
    assert all(len(v) == len(casc["steps"]) for v in casc["methods"].values()) and "saliency" in casc["methods"]
    assert "## Cascading randomization" in ranking
    assert (tiny_run / "reports/tiny/xai/cascade.png").read_bytes()[:4] == b"\x89PNG"
    # explanation drift: pre-social test images against their shared copies, per platform
    drift = scores["sharing_drift"]
    assert drift["n"] >= 1 and set(drift["pairs"]) == {"facebook", "telegram", "twitter"}
    sal = drift["methods"]["saliency"]
    assert set(sal) == set(drift["pairs"]) and all(-1 <= v["spearman"]["mean"] <= 1 for v in sal.values())
    rows = (tiny_run / "reports/tiny/xai/sharing_drift.csv").read_text().splitlines()
    assert rows[0].startswith("model,train_set,test_set,method,platform,spearman,spearman_ci_low")
    assert any(r.startswith("mnasnet_100,presocial,presocial,saliency,telegram,") for r in rows)
    assert "## Explanation drift under sharing" in ranking
    assert (tiny_run / "reports/tiny/xai/ranking.png").read_bytes()[:4] == b"\x89PNG"


def test_report_tables_figures_and_html(tiny_run):
    import csv

    rep = tiny_run / "reports/tiny"
    for n in (1, 2, 3, 4):
        for ext in ("md", "csv", "tex"):
            assert (rep / f"tables/table{n}.{ext}").stat().st_size > 0
    cell = json.loads((tiny_run / "results/tiny/metrics/mnasnet_100/presocial/presocial.json").read_text())
    t1 = {r["model"]: r for r in csv.DictReader((rep / "tables/table1.csv").open())}
    assert float(t1["mnasnet_100"]["accuracy"]) == pytest.approx(100 * cell["accuracy"], abs=1e-4)
    assert float(t1["mnasnet_100"]["accuracy_paper"]) == 99.88
    assert t1["vgg19"]["accuracy"] == "" and "accuracy" in t1["vgg19"]["missing"]
    assert "results/tiny/metrics/vgg19/presocial/presocial.json" in (rep / "tables/table1.md").read_text()
    for fig in ("training_curves.png", "matrix_mnasnet_100.png", "confusion_efficientnet_b0.png"):
        assert (rep / "figures" / fig).read_bytes()[:4] == b"\x89PNG"
    assert "evaluated cells: 20" in (rep / "README.md").read_text()
    # calibration: a row per cell, the threshold chosen on each model's pre-social validation predictions,
    # McNemar on the platforms' same sources
    cal = {(r["model"], r["train_set"], r["test_set"]): r for r in csv.DictReader((rep / "tables/calibration.csv").open())}
    assert len(cal) == 20 and float(cal["mnasnet_100", "presocial", "presocial"]["ece"]) == pytest.approx(
        cell["calibration"]["ece"], abs=1e-6)
    val = pd.read_parquet(tiny_run / "results/tiny/models/mnasnet_100/telegram/validation.parquet")
    assert set(val["platform"]) == {"presocial"} and len(val) > 0
    assert float(cal["mnasnet_100", "telegram", "twitter"]["validation_threshold"]) == pytest.approx(
        best_threshold(val["prob"], val["label"]), abs=1e-6)
    assert int(cal["efficientnet_b0", "presocial", "facebook"]["mcnemar_n"]) > 0 and cal["mnasnet_100", "presocial", "combined"]["accuracy"] != ""
    assert cal["efficientnet_b0", "presocial", "presocial"]["mcnemar_n"] == ""
    assert (rep / "figures/reliability.png").read_bytes()[:4] == b"\x89PNG"

    run_snakemake(tiny_run, "--report", "reports/tiny/report.html", "--configfile", "tiny.yaml")
    html = (rep / "report.html").read_text()
    for name in ("training_curves.png", "matrix_mnasnet_100.png", "table4.csv", "calibration.csv", "reliability.png", "gradcam.png", "actmax.png",
                 "panel_00.png", "Paper tables", "Explanation quality", "ranking.csv"):
        assert name in html, name


def test_second_run_has_nothing_to_do(tiny_run):
    proc = run_snakemake(tiny_run, "-n", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_changing_one_models_lr_replans_that_model_only(tiny_run):
    import yaml

    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["models"]["mnasnet_100"] = {"lr": 0.002}
    (tiny_run / "tiny_lr.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tiny_run, "-n", "--configfile", "tiny_lr.yaml")
    jobs = planned_jobs(proc.stdout)
    assert {rule for rule, _ in jobs} == {"train", "metrics", "explain", "actmax", "montage", "report",
                                          "xai_metrics", "xai_report"}
    assert all("/mnasnet_100/" in out for rule, out in jobs if rule not in ("montage", "report", "xai_report")), jobs
    assert len([j for j in jobs if j[0] == "train"]) == 2
    assert len([j for j in jobs if j[0] == "metrics"]) == 10


def test_changing_only_worker_counts_replans_nothing_and_reaches_the_jobs(tiny_run):
    """Worker and loader-thread counts set how fast a job runs, not what it makes: no data,
    training or evaluation job re-runs, and the new values still reach the commands that would run."""
    import yaml

    cfg = yaml.safe_load((tiny_run / "tiny.yaml").read_text())
    cfg["data"]["workers"] = 3
    cfg["data"]["synthetic"]["workers"] = 3
    cfg["train"]["loader_workers"] = 5
    (tiny_run / "tiny_workers.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tiny_run, "-n", "--configfile", "tiny_workers.yaml")
    # only the report, which records the config files' names (tiny_workers.yaml now)
    assert {rule for rule, _ in planned_jobs(proc.stdout)} == {"report"}
    forced = run_snakemake(tiny_run, "-n", "-p", "--cores", "8", "--configfile", "tiny_workers.yaml",
                           "--forceall").stdout
    assert re.search(r"deepfake_xai synth .*--workers 3", forced)
    assert re.search(r"deepfake_xai manifest .*--workers 3", forced)
    assert re.search(r"deepfake_xai train .*--loader-workers 5", forced)


def test_editing_library_code_reruns_exactly_the_jobs_that_run_it(tiny_run):
    """Snakemake tracks no code of a shell rule by itself: each rule's parameters hold the digest of
    the code its subcommand runs, so an edit re-plans exactly those jobs and what follows, while a
    touched file or an edited help text re-plans nothing (the run's own copy of the library)."""
    package = tiny_run / "src/deepfake_xai"

    def planned_after(path, edit) -> set[str]:
        original, before = path.read_bytes(), os.stat(path)
        try:
            path.write_bytes(edit(original))
            return {rule for rule, _ in planned_jobs(run_snakemake(tiny_run, "-n", "--configfile", "tiny.yaml").stdout)}
        finally:
            path.write_bytes(original)
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    jobs = planned_jobs(run_snakemake(tiny_run, "-n", "--configfile", "tiny.yaml").stdout)
    assert not jobs
    assert planned_after(package / "metrics.py", lambda b: b + b"\nEDITED = 1\n") == {"metrics", "report"}
    assert planned_after(package / "sets.py", lambda b: b + b"\nEDITED = 1\n") >= {"train", "metrics", "explain"}
    assert planned_after(package / "cli.py", lambda b: b.replace(b"predictions of a trained model on test parts",
                                                                 b"predictions of a trained model")) == set()
    # a stage's own module: its jobs and what follows them, nothing else
    assert planned_after(package / "stages/montage.py", lambda b: b + b"\nEDITED = 1\n") == {"montage", "report"}
    # a comment, a rewrite with the same bytes, a version bump: see test_provenance.py (digests)


def test_a_cell_rebuilt_from_scratch_is_identical(tiny_run):
    cell = "results/tiny/metrics/efficientnet_b0/telegram/twitter.json"
    before = (tiny_run / cell).read_text()
    for sub in ("models", "predictions", "metrics"):  # the training job writes models and predictions
        shutil.rmtree(tiny_run / "results/tiny" / sub / "efficientnet_b0" / "telegram")
    proc = run_snakemake(tiny_run, cell, "--cores", "2", "--configfile", "tiny.yaml")
    assert "rule train" in proc.stdout + proc.stderr
    assert (tiny_run / cell).read_text() == before


def test_a_platform_left_out_of_the_test_sets_is_never_predicted(synth_copy, tmp_path):
    """A dataset without Telegram images, and test sets that leave Telegram (and so "combined") out:
    the training job predicts only the configured parts, and the cells build. The model has a name
    of its own (config models may share an architecture), which train.json records."""
    import yaml

    shutil.rmtree(synth_copy / "TrueFace_PostSocial" / "Telegram")
    wd = copy_repo(tmp_path / "wd")
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    cfg["data"] = {"root": str(synth_copy)}
    cfg["test_sets"] = ["presocial", "facebook", "twitter"]
    cfg["models"] = {"mnas": {"arch": "mnasnet_100"}}
    cfg["grid"] = [{"models": ["mnas"], "train_sets": ["presocial"]}]
    cfg["explain"]["cells"] = [{"train_sets": ["presocial"], "test_sets": ["presocial"]}]
    (wd / "t.yaml").write_text(yaml.safe_dump(cfg))
    cell = "results/tiny/metrics/mnas/presocial/twitter.json"
    run_snakemake(wd, cell, "--cores", "2", "--configfile", "t.yaml")
    predicted = sorted(p.name for p in (wd / "results/tiny/predictions/mnas/presocial").iterdir())
    assert predicted == ["facebook.parquet", "presocial.parquet", "twitter.parquet"]
    assert json.loads((wd / cell).read_text())["n"] > 0
    summary = json.loads((wd / "results/tiny/models/mnas/presocial/train.json").read_text())
    assert summary["model"] == "mnas" and summary["arch"] == "mnasnet_100"


@pytest.mark.parametrize("override, message", [
    ('train={"epochz": 3}', "'epochz' was unexpected"),
    ('train={"lr": "fast"}', "train.lr: 'fast' is not of type 'number'"),
    ('models={"resnet5": {}}', "timm has no model named 'resnet5'"),
    ('grid=[{"models": ["vgg16"], "train_sets": ["presocial"]}]', "grid: model 'vgg16' is not defined"),
    ('test_sets=["instagram"]', "test_sets: unknown test set 'instagram'; expected one of presocial"),
    # names that become path parts: results/../data, results/synthetic/models/../telegram/
    ('dataset=".."', "dataset: '..' is not a usable name"),
    ('models={"..": {"arch": "mnasnet_100"}}', "models...: '..' is not a usable name"),
    # two mirrors' archives with one file name would download into one file, the second replacing the first
    ('data={"source": "trueface", "download": [{"url": "https://m/pre/part1.zip", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}, '
     '{"url": "https://m/post/part1.zip", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]}',
     "data.download[1]: the archive name 'part1.zip' (url 'https://m/post/part1.zip') is also that of "
     "'https://m/pre/part1.zip'"),
    ('data={"source": "trueface", "download": [{"url": "https://m/", "sha256": "0000000000000000000000000000000000000000000000000000000000000000"}]}',
     "data.download[0]: the url 'https://m/' ends in no usable file name"),
])
def test_bad_config_fails_before_any_job(tmp_path, override, message):
    wd = copy_repo(tmp_path)
    proc = run_snakemake(wd, "-n", "--config", override, check=False)
    assert proc.returncode != 0
    assert message in proc.stdout + proc.stderr
    assert not (wd / "results").exists()


def test_per_rule_conda_environments_are_refused_with_the_way_that_works(tmp_path):
    """Every job runs with the Python that runs Snakemake, so environments built per rule would go
    unused: refused before any job (or any conda call), saying how to use environment.yml instead."""
    wd = copy_repo(tmp_path)
    proc = run_snakemake(wd, "-n", "--software-deployment-method", "conda", check=False)
    assert proc.returncode != 0 and "conda env create -f environment.yml" in proc.stdout + proc.stderr
    assert "--software-deployment-method conda is not supported" in proc.stdout + proc.stderr


def test_paper_config_dry_run_and_lint_on_a_stand_in_tree(tmp_path):
    from deepfake_xai.data.synth import SynthConfig, generate

    wd = copy_repo(tmp_path / "wf")
    generate(tmp_path / "standin", SynthConfig(real=8, fake={"stylegan": {0.5: 2}}), progress=False)
    (wd / "standin.yaml").write_text(f"data:\n  root: {tmp_path / 'standin'}\n")
    proc = run_snakemake(wd, "-n", "-p", "--configfile", "config/trueface.yaml", "standin.yaml")
    jobs = planned_jobs(proc.stdout)
    # the paper's seven models and the CLIP linear probe, each pretrained once, x 5 train sets x 5 test sets
    assert len([j for j in jobs if j[0] == "pretrained"]) == 8
    assert len([j for j in jobs if j[0] == "train"]) == 40
    assert len([j for j in jobs if j[0] == "metrics"]) == 200
    assert "synthesize" not in {r for r, _ in jobs}
    # --configfile replaces the demo config: no demo shortcut reaches the paper's vgg19
    vgg = next(b for b in proc.stdout.split("\nrule ") if "models/vgg19/presocial/model.safetensors" in b
               and b.startswith("train"))
    assert '"epochs": 10' in vgg and '"image_size": 256' in vgg
    assert '"pretrained": true' in vgg and "--init-weights resources/pretrained/vgg19.safetensors" in vgg
    clip = next(b for b in proc.stdout.split("\nrule ") if "models/clip_vitb16/presocial/model.safetensors" in b
                and b.startswith("train"))
    assert '"freeze_backbone": true' in clip and '"pretrained_from": "vit_base_patch16_clip_224.openai"' in clip
    for args in ((), ("--configfile", "config/trueface.yaml", "standin.yaml")):
        lint = run_snakemake(wd, "--lint", *args)
        assert "Congratulations" in lint.stdout + lint.stderr
