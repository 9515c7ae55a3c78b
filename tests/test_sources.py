"""Datasets beyond the synthetic layout, on stand-ins generated here: the lab's TrueFace layout (Train/
and Test/ above everything, four platforms), TrueFake, CNNDetection/ForenSynths folders and a CSV
table, each through the real manifest rule and one training cell; cross-dataset cells; the sources'
bad input."""

import json
import re
import shutil
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest
import yaml
from conftest import copy_repo, run_snakemake

from deepfake_xai import config as dxcfg
from deepfake_xai.data.manifest import ManifestError, Reader, build_manifest, parse_path
from deepfake_xai.data.synth import SynthConfig, generate
from deepfake_xai.names import platforms

pytestmark = pytest.mark.workflow

TINY_TRAIN = {"center_crop": 32, "image_size": 32, "epochs": 1, "batch_size": 8, "max_train_images": 24}


@pytest.fixture(scope="module")
def four_platform_root(tmp_path_factory) -> Path:
    """A synthetic TrueFace-like set shared on all four of TrueFace's platforms, with both fake families."""
    table = platforms()
    cfg = SynthConfig.from_dict(
        {"seed": 5, "image_size": 32, "render_scale": 2, "real": 24,
         "fake": {"stylegan": {0.5: 8}, "stylegan2": {0.5: 8}, "diffusion": {0.7: 8}}, "shared_fraction": 0.5},
        {n: table[n] for n in ("facebook", "telegram", "twitter", "whatsapp")})
    return generate(tmp_path_factory.mktemp("four") / "data", cfg, progress=False)


def _files(root: Path) -> list[PurePosixPath]:
    return sorted(PurePosixPath(p.relative_to(root).as_posix()) for p in root.rglob("*")
                  if p.is_file() and p.suffix in (".png", ".jpg", ".jpeg"))


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)


def _workdir(tmp_path: Path, config: dict) -> Path:
    wd = copy_repo(tmp_path / "wd")
    (wd / "cfg.yaml").write_text(yaml.safe_dump(config))
    return wd


def _config(dataset: str, data: dict, **extra) -> dict:
    return {"dataset": dataset, "data": data, "train": TINY_TRAIN, "models": {"mnasnet_100": None},
            "evaluate": {"bootstrap": 50}, "explain": {"cells": []}, "xai": {"enabled": False}, **extra}


def test_the_lab_trueface_layout_gives_five_parts_and_keeps_its_folder_splits(four_platform_root, tmp_path):
    """TrueFace as its lab ships it: Train/ and Test/ above TrueFace_PreSocial and TrueFace_PostSocial/
    {Facebook, Telegram, Twitter, Whatsapp}; every copy of one source in the same folder split."""
    root = tmp_path / "lab"
    for rel in _files(four_platform_root):
        test = int(parse_path(rel).source_id.rsplit("/", 1)[-1]) % 4 == 0
        _copy(four_platform_root / rel, root / ("Test" if test else "Train") / rel)
    wd = _workdir(tmp_path, _config("lab", {"source": "trueface", "root": str(root)}))
    run_snakemake(wd, "--cores", "2", "results/lab/manifest.parquet", "--configfile", "cfg.yaml")
    m = pd.read_parquet(wd / "results/lab/manifest.parquet")
    assert list(dict.fromkeys(m["platform"])) and set(m["platform"]) == {
        "presocial", "facebook", "telegram", "twitter", "whatsapp"}
    assert len(m) == len(_files(root))
    in_test = m["path"].str.startswith("Test/")
    assert (m.loc[in_test, "split"] == "test").all()
    assert m.loc[~in_test, "split"].isin(["train", "val"]).all() and (m.loc[~in_test, "split"] == "val").any()
    assert (m.groupby("source_id")["split"].nunique() == 1).all()  # no source in two splits
    # the WhatsApp copies are partnered with their originals (suffix _WA stripped)
    wa = m[m["platform"] == "whatsapp"]
    assert len(wa) and wa["source_id"].isin(m.loc[m["platform"] == "presocial", "source_id"]).all()
    # and it is a train set and a test set like the others
    cfg = dxcfg.load(wd / "cfg.yaml", schema=str(wd / "workflow/schemas/config.schema.yaml"))
    assert "whatsapp" in cfg["train_sets"] and "whatsapp" in cfg["test_sets"]


def _truefake(four_platform_root: Path, root: Path) -> None:
    """TrueFake's layout: its generators (StyleGAN3, FLUX.1, StableDiffusionXL), reals from FFHQ and
    FORLAB, copies on Facebook, Telegram and X (Twitter's new name) under their original's name."""
    rename = {"Fake/StyleGAN/": "Fake/StyleGAN3/", "Fake/StyleGAN2/": "Fake/FLUX.1/",
              "Fake/Diffusion/": "Fake/StableDiffusionXL/", "TrueFace_PostSocial/Twitter/": "TrueFace_PostSocial/X/"}
    for rel in _files(four_platform_root):
        text = rel.as_posix()
        if "/Whatsapp/" in text:
            continue
        for a, b in rename.items():
            text = text.replace(a, b)
        if "Real/FFHQ/" in text and int(rel.stem.split("_")[0]) % 2:
            text = text.replace("Real/FFHQ/", "Real/FORLAB/")
        for suffix in ("_FB", "_TL", "_TW"):
            text = text.replace(suffix + ".", ".")
        _copy(four_platform_root / rel, root / text)


def _forensynths(four_platform_root: Path, root: Path) -> None:
    """CNNDetection/ForenSynths: split/<generator>/0_real|1_fake/<image>, reals spread over the groups."""
    groups = {"StyleGAN": "progan", "StyleGAN2": "stylegan2", "Diffusion": "diffusion"}
    reals = sorted(r for r in _files(four_platform_root) if r.parts[0] == "TrueFace_PreSocial" and r.parts[1] == "Real")
    for i, rel in enumerate(reals):
        group = list(groups.values())[i % 3]
        _copy(four_platform_root / rel, root / ("test" if i % 5 == 0 else "train") / group / "0_real" / rel.name)
    for rel in _files(four_platform_root):
        if rel.parts[0] == "TrueFace_PreSocial" and rel.parts[1] == "Fake":
            split = "test" if int(rel.stem.removeprefix("seed")) % 5 == 0 else "train"
            _copy(four_platform_root / rel, root / split / groups[rel.parts[2]] / "1_fake" / rel.name)


def _csv(four_platform_root: Path, root: Path) -> None:
    """A flat folder of images and a table: path,label,generator."""
    rows = []
    for rel in _files(four_platform_root):
        if rel.parts[0] != "TrueFace_PreSocial":
            continue
        fake = rel.parts[1] == "Fake"
        name = f"img/{'f' if fake else 'r'}_{rel.parts[2].lower()}_{rel.stem}.png"
        _copy(four_platform_root / rel, root / name)
        rows.append({"path": name, "label": "fake" if fake else "real", "generator": rel.parts[2] if fake else ""})
    pd.DataFrame(rows).to_csv(root / "labels.csv", index=False)


@pytest.mark.parametrize("source, build, generators", [
    ("truefake", _truefake, {"ffhq", "forlab", "stylegan3", "flux_1", "stable_diffusion_xl"}),
    ("folders", _forensynths, {"progan", "stylegan2", "diffusion"}),
    ("csv", _csv, {"real", "stylegan", "stylegan2", "diffusion"}),
], ids=["truefake", "forensynths", "csv"])
def test_each_source_goes_through_the_manifest_and_one_cell(four_platform_root, tmp_path, source, build, generators):
    root = tmp_path / source
    build(four_platform_root, root)
    wd = _workdir(tmp_path, _config(source, {"source": source, "root": str(root)}))
    cell = f"results/{source}/metrics/mnasnet_100/presocial/presocial.json"
    run_snakemake(wd, "--cores", "2", cell, "--configfile", "cfg.yaml")
    m = pd.read_parquet(wd / f"results/{source}/manifest.parquet")
    assert set(m["generator"]) == generators
    assert (m.groupby("source_id")["split"].nunique() == 1).all()
    if source == "truefake":
        assert set(m["platform"]) == {"presocial", "facebook", "telegram", "twitter"}
        shared = m[m["platform"] != "presocial"]  # grouped with their pre-social original
        assert shared["source_id"].isin(m.loc[m["platform"] == "presocial", "source_id"]).all()
    if source == "folders":
        assert (m.loc[m["path"].str.startswith("test/"), "split"] == "test").all()
        assert set(m["platform"]) == {"presocial"}
    metrics = json.loads((wd / cell).read_text())
    assert metrics["n"] == int(((m["platform"] == "presocial") & (m["split"] == "test")).sum())
    assert {g["generator"] for g in metrics["by_generator"]} <= generators


def test_a_cross_dataset_cell_plans_no_training_of_the_other_dataset_and_builds(four_platform_root, tmp_path):
    other = tmp_path / "forensynths"
    _forensynths(four_platform_root, other)
    config = _config("main", {"source": "synthetic", "synthetic": {
        "seed": 1, "image_size": 32, "render_scale": 2, "real": 24,
        "fake": {"stylegan": {"0.5": 12}, "stylegan2": {"0.5": 12}}}},
        train_sets=["presocial"], test_sets=["presocial"],
        transfer={"fs": {"data": {"source": "folders", "root": str(other)}}})
    wd = _workdir(tmp_path, config)
    cell = "results/main/transfer/fs/metrics/mnasnet_100/presocial/presocial.json"
    dry = run_snakemake(wd, "-n", "--cores", "1", cell, "--configfile", "cfg.yaml").stdout
    from test_workflow import planned_jobs

    assert planned_jobs(dry) == sorted([
        ("synthesize", "resources/main/archives/synthetic.tar"), ("extract", "resources/main/data"),
        ("manifest", "results/main/manifest.parquet"), ("cache", "results/main/cache/native_c32.npy"),
        ("train", "results/main/models/mnasnet_100/presocial/model.safetensors"),
        ("manifest", "results/fs/manifest.parquet"), ("cache", "results/fs/cache/native_c32.npy"),
        ("transfer_predict", "results/main/transfer/fs/predictions/mnasnet_100/presocial/presocial.parquet"),
        ("transfer_metrics", cell),
    ])
    run_snakemake(wd, "--cores", "2", cell, "--configfile", "cfg.yaml")
    metrics = json.loads((wd / cell).read_text())
    fs = pd.read_parquet(wd / "results/fs/manifest.parquet")
    assert metrics["test_dataset"] == "fs" and metrics["n"] == int((fs["split"] == "test").sum())
    assert not (wd / "results/fs/models").exists()


# --- bad input: a clear error naming the file or key, before any job writes ---------------------------


def test_a_layout_that_fits_no_source_names_a_path_and_the_source(four_platform_root, tmp_path):
    root = tmp_path / "fs"
    _forensynths(four_platform_root, root)
    with pytest.raises(ManifestError, match="(?s)do not fit the trueface layout.*not below a TrueFace_PreSocial"
                       ".*another data.source"):
        build_manifest(root, progress=False)
    with pytest.raises(ManifestError, match="(?s)do not fit the folders layout.*0_real/1_fake"):
        build_manifest(four_platform_root / "TrueFace_PreSocial" / "Real", progress=False, reader=Reader("folders"))


@pytest.mark.parametrize("table, message", [
    ("file,label\na.png,0\n", r"labels.csv: missing column\(s\) path"),
    ("path,label\na.png,maybe\n", r"labels.csv:2: label 'maybe' is not one of 0, 1, real, fake"),
    ("path,label\na.png,0\na.png,1\n", r"labels.csv:3: a.png is also listed on line 2"),
    ("path,label\n../a.png,0\n", r"labels.csv:2: path '../a.png' must be relative"),
    ("path,label,platform\na.png,0,myspace\n", r"labels.csv:2: platform 'myspace' is not one of"),
], ids=["missing column", "unknown label", "two rows claim one file", "escaping path", "unknown platform"])
def test_a_bad_csv_is_refused_naming_the_line(tmp_path, table, message):
    (tmp_path / "labels.csv").write_text(table)
    with pytest.raises(ManifestError, match=message):
        build_manifest(tmp_path, progress=False, reader=Reader("csv"))


def test_a_platform_present_but_left_out_of_data_parts_stops_the_manifest(four_platform_root):
    with pytest.raises(ManifestError, match="holds the part\\(s\\) whatsapp, which data.parts"):
        build_manifest(four_platform_root, progress=False, parts=["presocial", "facebook", "telegram", "twitter"])


def test_config_errors_name_the_key(tmp_path):
    def load(doc):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump(doc))
        return dxcfg.load(tmp_path / "c.yaml")

    base = _config("demo", {"source": "synthetic"})
    with pytest.raises(dxcfg.ConfigError, match="transfer.demo: a transfer dataset needs its own name"):
        load({**base, "transfer": {"demo": {"data": {"source": "synthetic"}}}})
    with pytest.raises(dxcfg.ConfigError, match="data.platforms.instagram: 'instagram' is not a known platform; "
                       "a new one needs `folders:`"):
        load({**base, "data": {"source": "synthetic", "platforms": {"instagram": {"jpeg_quality": 70}}}})
    with pytest.raises(dxcfg.ConfigError, match="the folder name 'Telegram' is claimed by both"):
        load({**base, "data": {"source": "synthetic", "platforms": {"signal": {"folders": ["Telegram"]}}}})
    with pytest.raises(dxcfg.ConfigError, match="protocols.presocial: a protocol's name must be a new"):
        load({**base, "protocols": {"presocial": {"families": ["gan"]}}})
    with pytest.raises(dxcfg.ConfigError, match="transfer.x.data: source folders needs data.root"):
        load({**base, "transfer": {"x": {"data": {"source": "folders"}}}})
    # a new platform with its folders is a part, a train set and a test set of the synthetic set
    cfg = load({**base, "data": {"source": "synthetic", "platforms": {"signal": {"folders": ["Signal"],
                "suffix": "_SG", "jpeg_quality": 60}}, "synthetic": {"platforms": ["telegram", "signal"]}}})
    assert cfg["data"]["parts"] == ["presocial", "telegram", "signal"]
    assert cfg["train_sets"] == ["presocial", "telegram", "signal", "combined"]


def test_a_protocol_trains_on_the_reals_and_the_listed_fakes_only(synth_root):
    from deepfake_xai.sets import select

    manifest, _ = build_manifest(synth_root, progress=False)
    rows = select(manifest, "gan_only", "train", {"part": "presocial", "generators": ["stylegan"]})
    assert set(rows["generator"]) == {"ffhq", "stylegan"} and set(rows["platform"]) == {"presocial"}
    everything = select(manifest, "presocial", "train")
    assert (rows["label"] == 0).sum() == (everything["label"] == 0).sum()
    cfg = {"protocols": {"gans": {"families": ["gan"]}}, "data": {"generators": {}}}
    assert {"stylegan", "stylegan2", "stylegan3"} <= set(dxcfg.protocol_rows(cfg, "gans")["generators"])
    assert "diffusion" not in dxcfg.protocol_rows(cfg, "gans")["generators"]


def test_doctor_walks_a_configured_root_and_counts_its_parts_and_generators(four_platform_root, tmp_path):
    """doctor reads a root as the manifest would (no image opened): every part and generator with its
    count, and a layout that fits no source named by path, before a long run finds out."""
    import subprocess
    import sys

    from conftest import REPO

    files = _files(four_platform_root)
    def doctor(data: dict) -> str:
        cfg = tmp_path / "doctor.yaml"
        cfg.write_text(yaml.safe_dump({"dataset": "mine", "data": data, "models": {"mnasnet_100": None}}))
        proc = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "doctor", "--config", str(cfg),
                               "--results", str(tmp_path)], capture_output=True, text=True, cwd=REPO, timeout=120)
        return next(line for line in proc.stdout.splitlines() if "] dataset:" in line)

    line = doctor({"source": "trueface", "root": str(four_platform_root)})
    counts = pd.Series([parse_path(f).platform for f in files]).value_counts()
    assert line.startswith("[OK  ]") and f"{len(files)} files" in line
    for part in ("presocial", "facebook", "telegram", "twitter", "whatsapp"):
        assert f"{part} {counts[part]}" in line  # each part counted from the paths themselves
    assert "diffusion" in line and "stylegan2" in line
    line = doctor({"source": "trueface", "root": str(four_platform_root),
                   "platforms": {"myspace": {"folders": ["MySpace"], "suffix": "_MS", "extension": ".jpg"}},
                   "parts": ["presocial", "facebook", "telegram", "twitter", "whatsapp", "myspace"]})
    assert line.startswith("[WARN]") and "myspace" in line
    fs = tmp_path / "fs"
    _forensynths(four_platform_root, fs)
    line = doctor({"source": "trueface", "root": str(fs)})
    assert line.startswith("[FAIL]") and "do not fit the trueface layout" in line
    assert doctor({"source": "folders", "root": str(fs)}).startswith("[OK  ]")


@pytest.mark.parametrize("doc, key", [
    ({"dataset": ".."}, "dataset: '..'"),
    ({"dataset": "a/b"}, "dataset: 'a/b'"),
    ({"dataset": "."}, "dataset: '.'"),
    ({"models": {"..": {"arch": "mnasnet_100"}}}, "models...: '..'"),
    ({"models": {"x/y": {"arch": "mnasnet_100"}}}, "models.x/y: 'x/y'"),
    ({"protocols": {"../up": {"families": ["gan"]}}}, "protocols.../up: '../up'"),
    ({"transfer": {"..": {"data": {"source": "synthetic"}}}}, "transfer...: '..'"),
    ({"data": {"source": "trueface", "download": [{"url": "https://m/a.zip", "name": "../a.zip",
                                                    "sha256": "0" * 64}]}}, "data.download[0].name: '../a.zip'"),
    ({"data": {"source": "synthetic", "generators": {"..": {"family": "gan", "folders": ["X"]}}}},
     "data.generators...: '..'"),
])
def test_names_that_become_path_parts_must_be_one_safe_component(tmp_path, doc, key):
    """A name that would plan outputs outside its folder (results/synthetic/models/../telegram/) is refused
    before anything runs, with the key named."""
    base = _config("demo", {"source": "synthetic"})
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({**base, **doc}))
    with pytest.raises(dxcfg.ConfigError, match=re.escape(key) + " is not a usable name"):
        dxcfg.load(tmp_path / "c.yaml")
