"""The paper's tables built from fixture metrics files: shape, cell values, missing cells, formats."""

import csv
import hashlib
import io
import json
import re
from importlib import resources

import numpy as np
import pytest

from deepfake_xai.report import tables as T
from deepfake_xai.report.build import build_report, report_files

PAPER = T.paper_rows()
PARTS = ["presocial", "facebook", "telegram", "twitter", "combined"]


def fixture_metrics(model: str, train_set: str, test_set: str) -> dict:
    """A metrics file with values derived from the cell's name, so each cell is distinguishable."""
    k = (len(model) * 7 + len(train_set) * 3 + PARTS.index(test_set)) % 40
    acc = 0.5 + k / 100
    return {"model": model, "train_set": train_set, "test_set": test_set, "n": 100,
            "accuracy": acc, "f1": acc - 0.01, "roc_auc": acc + 0.02,
            "ci95": {"accuracy": [acc - 0.05, min(1.0, acc + 0.04)], "f1": [acc - 0.07, acc + 0.02]},
            "confusion_matrix": {"tn": 40, "fp": 10, "fn": 8, "tp": 42}}


def write_fixture(tmp_path, cells) -> list:
    paths = []
    for m, tr, te in cells:
        p = tmp_path / "results/demo/metrics" / m / tr / f"{te}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(fixture_metrics(m, tr, te)))
        paths.append(p)
    return paths


def paper_value(table, train_set, model, test_set, metric):
    hits = [r["value"] for r in PAPER if (r["table"], r["train_set"], r["model"], r["test_set"], r["metric"])
            == (table, train_set, model, test_set, metric)]
    assert len(hits) == 1
    return hits[0]


ALL_CELLS = sorted({(r["model"], r["train_set"], T.TEST_SET_ALIASES.get(r["test_set"], r["test_set"]))
                    for r in PAPER if r["test_set"] != "average"})


def test_paper_csv_is_the_recorded_copy():
    data = resources.files("deepfake_xai.report").joinpath("data", "paper_tables.csv").read_bytes()
    readme = resources.files("deepfake_xai.report").joinpath("data", "README.md").read_text()
    recorded = re.search(r"sha256: `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(data).hexdigest() == recorded


def test_tables_have_the_papers_shape():
    tables = T.layouts(PAPER)
    shapes = {t.number: (len(t.rows), t.column_labels) for t in tables}
    assert shapes[1] == (5, ["Params (M)", "Accuracy", "F1"])
    assert shapes[2] == (5, ["Pre-social", "Telegram", "Twitter", "Facebook", "Combined"])
    assert shapes[3] == (15, ["Pre-social", "Telegram", "Twitter", "Facebook", "Overall"])
    assert shapes[4] == (3, ["Pre-social", "Telegram", "Twitter", "Facebook", "Combined", "Average"])
    t3 = tables[2]
    assert [tr for tr, _ in t3.rows[::5]] == ["telegram", "twitter", "facebook"]
    assert [m for _, m in t3.rows[:5]] == ["vgg19", "resnet50", "densenet121", "mnasnet_100", "efficientnet_b2"]


def test_cell_values_intervals_paper_and_difference(tmp_path):
    metrics = T.load_metrics(write_fixture(tmp_path, ALL_CELLS))
    summaries = {("mnasnet_100", "presocial"): {"parameters": 3_104_706}}
    tables = {t.number: t for t in T.build_tables(metrics, summaries)}
    # Table 2, combined-trained ResNet50 tested on Twitter
    col = next(c for c in tables[2].columns if c.test_set == "twitter")
    cell = tables[2].cells[("combined", "resnet50"), col]
    want = fixture_metrics("resnet50", "combined", "twitter")
    assert cell.value == pytest.approx(100 * want["accuracy"])
    assert cell.ci == pytest.approx((100 * want["ci95"]["accuracy"][0], 100 * want["ci95"]["accuracy"][1]))
    assert cell.paper == paper_value(2, "combined", "resnet50", "twitter", "accuracy") == 99.82
    assert cell.diff == pytest.approx(cell.value - 99.82)
    # Table 3's "overall" is this run's pooled combined test set
    col = next(c for c in tables[3].columns if c.test_set == "overall")
    cell = tables[3].cells[("twitter", "densenet121"), col]
    assert cell.value == pytest.approx(100 * fixture_metrics("densenet121", "twitter", "combined")["accuracy"])
    assert cell.paper == 98.11
    # Table 1's F1 and parameter count
    f1 = tables[1].cells[("presocial", "efficientnet_b2"), T.Column("presocial", "f1")]
    assert f1.value == pytest.approx(100 * fixture_metrics("efficientnet_b2", "presocial", "presocial")["f1"])
    params = tables[1].cells[("presocial", "mnasnet_100"), T.Column("presocial", "params_millions")]
    assert params.value == pytest.approx(3.104706) and params.paper == 4
    # differences: percentage points, but millions for the parameter count (Table 1 only)
    assert "(percentage points; millions for Params (M))." in T.to_markdown(tables[1])
    assert "(percentage points)." in T.to_markdown(tables[2])
    # Table 4's average is the mean of the five columns before it
    row = ("telegram", "efficientnet_b1")
    five = [tables[4].cells[row, c].value for c in tables[4].columns if c.test_set != "average"]
    avg = tables[4].cells[row, T.Column("average", "accuracy")]
    assert avg.value == pytest.approx(sum(five) / 5) and avg.ci is None and avg.paper == 98.95
    assert all(not t.missing for n, t in tables.items() if n != 1)


def test_missing_cells_are_reported_not_invented(tmp_path):
    cells = [c for c in ALL_CELLS if not (c[0] == "efficientnet_b1" and c[2] == "twitter")
             and c[1] != "facebook"]
    metrics = T.load_metrics(write_fixture(tmp_path, cells))
    tables = {t.number: t for t in T.build_tables(
        metrics, metrics_pattern="results/demo/metrics/{model}/{train_set}/{test_set}.json")}
    t4 = tables[4]
    gap = t4.cells[("telegram", "efficientnet_b1"), T.Column("twitter", "accuracy")]
    assert gap.value is None and gap.missing == "results/demo/metrics/efficientnet_b1/telegram/twitter.json"
    assert t4.cells[("telegram", "efficientnet_b1"), T.Column("average", "accuracy")].value is None
    assert t4.missing == ["results/demo/metrics/efficientnet_b1/telegram/twitter.json"]
    assert t4.cells[("telegram", "efficientnet_b0"), T.Column("average", "accuracy")].value is not None
    # Table 3 lacks the five Facebook-trained rows: 25 cells, 25 files
    assert len(tables[3].missing) == 25 and all("/facebook/" in m for m in tables[3].missing)

    md = T.to_markdown(t4)
    assert "missing / 97.50 / -" in md
    assert "`results/demo/metrics/efficientnet_b1/telegram/twitter.json`" in md
    rows = list(csv.DictReader(io.StringIO(T.to_csv(t4))))
    assert [r["model"] for r in rows] == ["efficientnet_b0", "efficientnet_b1", "efficientnet_b2"]
    b1 = rows[1]
    assert b1["twitter"] == "" and b1["twitter_paper"] == "97.5000" and b1["average"] == ""
    assert b1["missing"] == "twitter:accuracy;average:accuracy"
    assert float(rows[0]["telegram"]) == pytest.approx(
        100 * fixture_metrics("efficientnet_b0", "telegram", "telegram")["accuracy"])
    tex = T.to_latex(t4)
    assert tex.count(r"\\") >= 4 and r"\toprule" in tex and r"\bottomrule" in tex
    assert "Missing cells (not built): 1." in tex


def test_markdown_and_latex_keep_the_row_and_column_order(tmp_path):
    metrics = T.load_metrics(write_fixture(tmp_path, ALL_CELLS))
    t3 = T.build_tables(metrics)[2]
    md_rows = [line for line in T.to_markdown(t3).splitlines() if line.startswith("| ") and "---" not in line]
    assert md_rows[0].split(" | ")[2:] == ["Pre-social", "Telegram", "Twitter", "Facebook", "Overall |"]
    assert [r.split(" | ")[:2] for r in md_rows[1:6]] == [["| Telegram", n] for n in
                                                         ["VGG19", "ResNet50", "DenseNet121", "MnasNet",
                                                          "EfficientNet-B2"]]
    assert len(md_rows) == 16
    body = T.to_latex(t3).split(r"\midrule")[1].split(r"\bottomrule")[0]
    assert body.count("shortstack") == 15 * 5


def test_a_file_that_is_not_a_metrics_file_is_named(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"accuracy": 0.9}))
    with pytest.raises(ValueError, match=r"x\.json: not a metrics file \(no 'model' field\)"):
        T.load_metrics([bad])


def test_build_report_writes_every_declared_file(tmp_path):
    cells = [c for c in ALL_CELLS if c[0] in ("mnasnet_100", "efficientnet_b2") and c[1] == "telegram"]
    metrics = write_fixture(tmp_path, cells)
    train = []
    for m in ("mnasnet_100", "efficientnet_b2"):
        d = tmp_path / "results/demo/models" / m / "telegram"
        d.mkdir(parents=True)
        (d / "train.json").write_text(json.dumps({
            "arch": m, "train_set": "telegram", "parameters": 1_000_000, "epochs": 2, "best_epoch": 2,
            "best_val_balanced_accuracy": 0.8, "seconds": 12.0, "device": "cpu", "torch": "x"}))
        (d / "log.csv").write_text("epoch,train_loss,val_balanced_accuracy\n1,0.7,0.6\n2,0.5,0.8\n")
        train.append(d / "train.json")
    out = tmp_path / "reports/demo"
    configs = [tmp_path / "base.yaml", tmp_path / "override.yaml"]
    for c in configs:
        c.write_text(f"# {c.name}\n")
    written = build_report(metrics_files=metrics, train_files=train, out_dir=out, dataset="demo",
                           models=["mnasnet_100", "efficientnet_b2"], train_sets=["telegram", "presocial"],
                           test_sets=PARTS, results_dir=tmp_path / "results/demo", config_files=configs)
    assert sorted(map(str, written)) == sorted(report_files(out, ["mnasnet_100", "efficientnet_b2"]))
    for p in written:
        assert p.stat().st_size > 0
    readme = (out / "README.md").read_text()
    assert "Trainings: 2 (model x train set); evaluated cells: 10" in readme
    for c in configs:  # every config file the run merged, with its hash
        assert f"`{c}` (sha256 `{hashlib.sha256(c.read_bytes()).hexdigest()[:16]}`)" in readme
    assert "Table 4. Ablation: EfficientNet-B0/B1/B2 trained on Telegram" in readme
    assert "6 of 18 cells built" in readme  # Table 4: the B2 row, its average included
    matrices = list(csv.DictReader((out / "tables/matrices.csv").open()))
    assert len(matrices) == 2 * 2 * 5 and sum(int(r["built"]) for r in matrices) == 10


def test_training_runs_are_keyed_by_the_config_model_name_not_the_architecture(tmp_path):
    """Two config models may share an architecture (e.g. efficientnet_b2 at two input sizes)."""
    files = []
    for name in ("b2_224", "b2_320", "b2_320_again"):
        p = tmp_path / f"{name}.json"
        model = "b2_320" if name == "b2_320_again" else name
        p.write_text(json.dumps({"model": model, "arch": "efficientnet_b2", "train_set": "telegram"}))
        files.append(p)
    runs = T.load_train_summaries(files[:2])
    assert set(runs) == {("b2_224", "telegram"), ("b2_320", "telegram")}
    with pytest.raises(ValueError, match=r"b2_320_again\.json and .*b2_320\.json are both training runs of b2_320"):
        T.load_train_summaries(files)
    old = tmp_path / "old.json"  # written before train.json recorded the model's name
    old.write_text(json.dumps({"arch": "resnet50", "train_set": "presocial"}))
    assert set(T.load_train_summaries([old])) == {("resnet50", "presocial")}


def _xai_cell(model: str, scores: dict) -> dict:
    """An xai-cell result with the given (insertion, deletion, energy, sanity) per method."""
    methods = {}
    for m, (ins, dele, energy, sanity) in scores.items():
        methods[m] = {"insertion_auc": {"mean": ins, "n": 4, "ci95": [ins - 0.1, ins + 0.1]},
                      "deletion_auc": {"mean": dele, "n": 4, "ci95": [dele - 0.1, dele + 0.1]},
                      "energy_in_box": {"mean": energy, "n": 2, "ci95": None}, "sanity": sanity}
    return {"model": model, "train_set": "presocial", "test_set": "combined", "n_images": 4, "n_with_box": 2,
            "sanity_threshold": 0.5, "methods": methods}


def test_xai_ranking_orders_methods_and_checks_adebayo():
    from deepfake_xai.report.xai import ranking, ranking_markdown

    cells = [_xai_cell("a", {"saliency": (0.8, 0.3, 0.2, "passes"), "gradcam": (0.6, 0.5, 0.4, "passes"),
                             "guided_backprop": (0.7, 0.5, 0.1, "fails")}),
             _xai_cell("b", {"saliency": (0.6, 0.3, 0.2, "passes"), "gradcam": (0.6, 0.5, 0.6, "undetermined (flat maps)"),
                             "guided_backprop": (0.7, 0.5, 0.1, "passes")})]
    flat = _xai_cell("c", {"saliency": (0.7, 0.3, 0.2, "passes")})
    flat["methods"]["gradcam"] = {"insertion_auc": None, "deletion_auc": None, "energy_in_box": None,
                                  "flat_maps": True, "sanity": "undetermined (flat maps)"}
    with_flat = {r["method"]: r for r in ranking(cells + [flat])}
    assert with_flat["gradcam"]["insertion_auc"]["cells"] == 2  # the flat cell does not enter the scores
    assert "| gradcam | 0.400 / +0.100 / passes | 0.600 / +0.100 / undetermined | flat maps |" in \
        ranking_markdown(list(with_flat.values()), cells + [flat])
    rows = {r["method"]: r for r in ranking(cells)}
    assert rows["saliency"]["faithfulness"] == pytest.approx(0.7 - 0.3)  # image-weighted means of both cells
    assert [rows[m]["faithfulness_rank"] for m in ("saliency", "guided_backprop", "gradcam")] == [1, 2, 3]
    assert rows["gradcam"]["localization_rank"] == 1 and rows["guided_backprop"]["localization_rank"] == 3
    assert (rows["guided_backprop"]["sanity_fails"], rows["guided_backprop"]["sanity_passes"]) == (1, 1)
    md = ranking_markdown(list(rows.values()), cells)
    assert "| guided_backprop | fails | fails | yes |" in md  # ties go to "fails": flagged, not excused
    assert "| saliency | passes | passes | yes |" in md and "| gradcam | passes | passes | yes |" in md
    cells[0]["methods"]["gradcam"]["flat_images"] = 2  # scored on the others: the table says so
    assert "| gradcam | 0.400 / +0.100 / passes (2 flat left out) |" in ranking_markdown(list(rows.values()), cells)


def test_pooled_intervals_shrink_with_more_cells_and_the_kept_fraction_is_the_cells():
    from deepfake_xai.report.xai import pooled, ranking, ranking_markdown

    one = _xai_cell("a", {"saliency": (0.8, 0.3, 0.2, "passes")})
    one["keep"] = 0.3
    single = pooled([one], "saliency", "insertion_auc")
    assert single["ci95"] == pytest.approx([0.7, 0.9])  # one cell: its own interval
    twice = pooled([one, {**one, "model": "b"}], "saliency", "insertion_auc")
    assert twice["mean"] == pytest.approx(0.8) and twice["n"] == 8
    # two equal, independent cells: the standard error falls by sqrt(2)
    assert twice["ci95"][1] - twice["ci95"][0] == pytest.approx(0.2 / np.sqrt(2))
    assert "confidence drop, top 30% kept" in ranking_markdown(ranking([one]), [one])


def test_a_missing_config_file_stops_the_report_and_metrics_alone_make_one(tmp_path):
    import subprocess
    import sys

    paths = write_fixture(tmp_path, [("efficientnet_b2", "presocial", "presocial")])
    (tmp_path / "run.yaml").write_text("dataset: demo\n")
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "report", "--metrics", *map(str, paths),
                           "--out-dir", str(out), "--dataset", "demo", "--models", "efficientnet_b2",
                           "--train-sets", "presocial", "--test-sets", "presocial",
                           "--config", str(tmp_path / "run.yaml"), str(tmp_path / "my-overrides.yaml")],
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert f"config file(s) not found: {tmp_path / 'my-overrides.yaml'}" in proc.stderr
    assert not out.exists()
    written = build_report(metrics_files=paths, train_files=[], out_dir=out, dataset="demo",
                           models=["efficientnet_b2"], train_sets=["presocial"], test_sets=["presocial"],
                           config_files=[tmp_path / "run.yaml"])
    assert "`" + str(tmp_path / "run.yaml") + "` (sha256" in (out / "README.md").read_text() and written


def test_broken_input_files_are_named_in_one_line(tmp_path):
    bad_json = tmp_path / "cell.json"
    bad_json.write_text('{"model": "vgg19", ')
    with pytest.raises(T.ReportInputError, match=r"cell\.json: not valid JSON"):
        T.load_metrics([bad_json])
    with pytest.raises(T.ReportInputError, match=r"train\.json: not a train\.json \(no 'arch' field\)"):
        (tmp_path / "train.json").write_text('{"train_set": "presocial"}')
        T.load_train_summaries([tmp_path / "train.json"])
    paper = tmp_path / "paper.csv"
    paper.write_text("table,train_set,model,test_set,metric,value\n1,presocial,vgg19,presocial,accuracy,n/a\n")
    with pytest.raises(T.ReportInputError, match=r"paper\.csv, line 2: table 1 and value 'n/a' must be numbers"):
        T.paper_rows(paper)


def test_wilson_interval_equals_scipys():
    from scipy.stats import binomtest

    from deepfake_xai.report.generalization import wilson

    for k, n in ((0, 5), (3, 7), (19, 20), (50, 100), (1, 1)):
        ref = binomtest(k, n).proportion_ci(method="wilson")
        assert np.allclose(wilson(k, n), (ref.low, ref.high), atol=1e-9), (k, n)


def test_per_generator_table_marks_the_generators_a_model_never_saw(tmp_path):
    from deepfake_xai.report.generalization import generalization_markdown, generator_rows

    by_gen = [{"generator": "ffhq", "psi": None, "n": 10, "accuracy": 0.9},
              {"generator": "stylegan", "psi": 0.5, "n": 6, "accuracy": 1.0},
              {"generator": "stylegan", "psi": 0.7, "n": 4, "accuracy": 0.5},
              {"generator": "diffusion", "psi": 0.7, "n": 8, "accuracy": 0.25}]
    metrics = {("m", "gan_only", "presocial"): {"by_generator": by_gen},
               ("m", "presocial", "presocial"): {"by_generator": by_gen}}
    summaries = {("m", "gan_only"): {"trained_generators": ["stylegan"]},
                 ("m", "presocial"): {"trained_generators": ["diffusion", "stylegan"]}}
    families = {"ffhq": "real", "stylegan": "gan", "diffusion": "diffusion"}
    rows = {(r["train_set"], r["generator"]): r for r in generator_rows(metrics, summaries, families)}
    assert rows["gan_only", "stylegan"]["n"] == 10 and rows["gan_only", "stylegan"]["accuracy"] == 0.8  # psi pooled
    assert rows["gan_only", "diffusion"]["held_out"] and not rows["gan_only", "stylegan"]["held_out"]
    assert not rows["gan_only", "ffhq"]["held_out"] and not rows["presocial", "diffusion"]["held_out"]
    md = generalization_markdown(list(rows.values()))
    assert "| diffusion | diffusion | 8 | 25.0 [" in md and "**held out**" in md
    assert md.count("| m | gan_only |") == 3 and "| m | Pre-social |" not in md  # only cells with a held-out generator
