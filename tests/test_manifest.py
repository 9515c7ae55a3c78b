"""Layout discovery, manifest contents, leakage-free splits and rejected files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pandas as pd
import pytest

from deepfake_xai.data.manifest import (
    LayoutError,
    ManifestError,
    assign_splits,
    build_manifest,
    parse_path,
    read_manifest,
    unpartnered_copies,
    write_manifest,
)

# Ground truth of each class folder, written out by hand (independent of the code under test).
TRUTH = {
    "Real/FFHQ": (0, "ffhq", None),
    "Fake/StyleGAN/images-psi-0.5": (1, "stylegan", 0.5),
    "Fake/StyleGAN/images-psi-0.7": (1, "stylegan", 0.7),
    "Fake/StyleGAN2/conf-f-psi-0.5": (1, "stylegan2", 0.5),
    "Fake/StyleGAN2/conf-f-psi-1": (1, "stylegan2", 1.0),
}
PLATFORMS = {"TrueFace_PreSocial": "presocial", "TrueFace_PostSocial/Facebook": "facebook",
             "TrueFace_PostSocial/Telegram": "telegram", "TrueFace_PostSocial/Twitter": "twitter"}


def _truth_of(rel: str) -> dict:
    rel = "/".join(p for p in rel.split("/") if p not in ("Train", "Test"))
    for prefix, platform in PLATFORMS.items():
        if rel.startswith(prefix + "/"):
            rest = rel[len(prefix) + 1:]
            for folder, (label, gen, psi) in TRUTH.items():
                if rest.startswith(folder + "/"):
                    name = rest[len(folder) + 1:]
                    stem = name.rsplit(".", 1)[0]
                    for suf in ("_FB", "_TL", "_TW"):
                        stem = stem.removesuffix(suf)
                    return {"label": label, "generator": gen, "psi": psi, "platform": platform, "stem": stem,
                            "folder": folder}
    raise AssertionError(f"test has no truth for {rel}")


def _check_labels(manifest: pd.DataFrame, n_files: int):
    assert len(manifest) == n_files
    for row in manifest.itertuples():
        t = _truth_of(row.path)
        assert (row.label, row.generator, row.platform) == (t["label"], t["generator"], t["platform"]), row.path
        assert (pd.isna(row.psi) and t["psi"] is None) or row.psi == t["psi"], row.path
        number = t["stem"].removeprefix("seed")
        stem = str(int(number)) if number.isdigit() else t["stem"]  # "seed0042" and "000042" are image 42
        assert row.source_id == f"{t['folder'].lower()}/{stem}", row.path


def _image_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.suffix in (".png", ".jpg", ".jpeg")]


def test_flat_layout_labels_every_file(synth_root):
    manifest, rejected = build_manifest(synth_root, progress=False)
    assert rejected.empty
    _check_labels(manifest, len(_image_files(synth_root)))
    assert set(manifest["platform"]) == {"presocial", "facebook", "telegram", "twitter"}
    # evidence boxes: present on fakes only
    fake = manifest["label"] == 1
    assert manifest.loc[fake, "evidence_x0"].notna().all()
    assert manifest.loc[~fake, "evidence_x0"].isna().all()


def _move_into_splits(root: Path, where: str) -> dict[str, str]:
    """Re-arrange a flat copy into Train/Test folders; return source stem -> split given."""
    given = {}
    for p in _image_files(root):
        rel = p.relative_to(root)
        t = _truth_of(rel.as_posix())
        key = f"{t['folder']}/{t['stem']}"
        split = given.setdefault(key, "Test" if hash(key) % 3 == 0 else "Train")
        if where == "top":
            new = root / split / rel
        else:  # below the platform folder
            parts = rel.parts
            k = 1 if parts[0] == "TrueFace_PreSocial" else 2
            new = root.joinpath(*parts[:k], split, *parts[k:])
        new.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(p, new)
    return given


@pytest.mark.parametrize("where", ["top", "inside"])
def test_train_test_layout_labels_every_file_and_keeps_given_splits(synth_copy, where):
    n = len(_image_files(synth_copy))
    given = _move_into_splits(synth_copy, where)
    manifest, rejected = build_manifest(synth_copy, progress=False, val_fraction=0.2)
    assert rejected.empty
    _check_labels(manifest, n)
    for row in manifest.itertuples():
        t = _truth_of(row.path)
        want = given[f"{t['folder']}/{t['stem']}"]
        if want == "Test":
            assert row.split == "test", row.path
        else:
            assert row.split in ("train", "val"), row.path
    assert (manifest["split"] == "val").any()


def test_a_source_never_spans_two_splits(synth_root):
    manifest, _ = build_manifest(synth_root, progress=False)
    per_source = manifest.groupby("source_id")["split"].nunique()
    assert per_source.max() == 1
    # and the shared copies really are grouped: some sources have four copies
    assert manifest.groupby("source_id").size().max() == 4


def test_split_assignment_groups_by_source_and_is_deterministic():
    rows = []
    for s in range(200):
        label = s % 2
        for platform in ("presocial", "facebook"):
            rows.append({"source_id": f"src{s}", "label": label, "generator": "g", "psi": None,
                         "dataset_split": None, "platform": platform})
    df = pd.DataFrame(rows)
    a = assign_splits(df, 0.15, 0.2, seed=0)
    b = assign_splits(df.sample(frac=1, random_state=1), 0.15, 0.2, seed=0).sort_index()
    assert (a == b).all()
    assert df.assign(split=a).groupby("source_id")["split"].nunique().max() == 1
    per_source = df.assign(split=a).drop_duplicates("source_id")
    assert per_source["split"].value_counts().to_dict() == {"train": 130, "test": 40, "val": 30}
    assert (assign_splits(df, 0.15, 0.2, seed=1) != a).any()


def test_groups_outside_split_folders_reach_test_when_others_have_folders():
    """A mirror with Train/Test folders above the fakes only: the reals are still split by the
    fractions (else every test set would be fakes only); the foldered fakes keep their folders' word."""
    rows = [{"source_id": f"real{s}", "label": 0, "generator": "ffhq", "psi": None, "dataset_split": None,
             "platform": "presocial"} for s in range(100)]
    rows += [{"source_id": f"fake{s}", "label": 1, "generator": "stylegan", "psi": 0.5,
              "dataset_split": "test" if s < 30 else "train", "platform": "presocial"} for s in range(100)]
    df = pd.DataFrame(rows)
    split = assign_splits(df, 0.15, 0.2, seed=0)
    real = split[df["label"] == 0].value_counts().to_dict()
    fake = split[df["label"] == 1]
    assert real == {"train": 65, "test": 20, "val": 15}
    assert (fake[df["dataset_split"] == "test"] == "test").all() and (fake == "test").sum() == 30
    assert (fake == "val").sum() == 15 and not (fake[df["dataset_split"] == "train"] == "test").any()


def _manifest_cli(root, out, max_rejected, **cfg):
    cfg = json.dumps({"max_rejected_fraction": max_rejected, **cfg})
    return subprocess.run(
        [sys.executable, "-m", "deepfake_xai.cli", "--quiet", "manifest", "--root", str(root),
         "--dataset", "t", "--out", str(out / "manifest.parquet"), "--rejected", str(out / "rejected.parquet"),
         "--summary", str(out / "summary.csv"), "--config-json", cfg],
        capture_output=True, text=True)


def test_corrupt_files_are_listed_not_fatal(synth_copy, tmp_path):
    pre = synth_copy / "TrueFace_PreSocial" / "Real" / "FFHQ"
    fb = synth_copy / "TrueFace_PostSocial" / "Facebook" / "Real" / "FFHQ"
    (pre / "90000.png").write_bytes(b"")
    good_png = next(pre.glob("*.png")).read_bytes()
    (pre / "90001.png").write_bytes(good_png[: len(good_png) // 2])
    good_jpg = next(fb.glob("*.jpg")).read_bytes()
    (fb / "90002_FB.jpg").write_bytes(good_jpg[: len(good_jpg) // 2])
    (pre / "90003.png").write_text("this is not an image")
    manifest, rejected = build_manifest(synth_copy, progress=False, max_rejected_fraction=0.05)
    reasons = dict(zip(rejected["path"].map(lambda p: PurePosixPath(p).name), rejected["reason"]))
    assert set(reasons) == {"90000.png", "90001.png", "90002_FB.jpg", "90003.png"}
    assert "empty" in reasons["90000.png"]
    assert "corrupt" in reasons["90001.png"] or "truncated" in reasons["90001.png"]
    assert "truncated JPEG" in reasons["90002_FB.jpg"]
    assert "not an image" in reasons["90003.png"]
    assert not manifest["path"].str.contains("9000").any()

    # the command line keeps going too, and writes rejected.parquet
    out = tmp_path / "m"
    proc = _manifest_cli(synth_copy, out, 0.05)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_parquet(out / "rejected.parquet")) == 4
    assert "rejected" in proc.stdout

    # over the limit: a clear error, rejected.parquet still written, no manifest
    out2 = tmp_path / "m2"
    proc = _manifest_cli(synth_copy, out2, 0.001)
    assert proc.returncode != 0
    assert "max_rejected_fraction" in proc.stderr and "rejected.parquet" in proc.stderr
    assert (out2 / "rejected.parquet").exists() and not (out2 / "manifest.parquet").exists()


def test_layout_errors_name_the_path():
    assert parse_path("TrueFace_PostSocial/WhatsApp/Real/FFHQ/00001_WA.jpg").platform == "whatsapp"
    assert parse_path("TrueFace_PostSocial/X/Real/FFHQ/00001_TW.jpg").platform == "twitter"
    with pytest.raises(LayoutError, match="unknown platform folder 'Instagram'.*data.platforms"):
        parse_path("TrueFace_PostSocial/Instagram/Real/FFHQ/00001_IG.jpg")
    with pytest.raises(LayoutError, match="unknown generator folder 'Midjourney'.*data.generators"):
        parse_path("TrueFace_PreSocial/Fake/Midjourney/v6/0001.png")
    with pytest.raises(LayoutError, match="not below a TrueFace_PreSocial"):
        parse_path("images/00001.png")
    with pytest.raises(LayoutError, match="Real or Fake"):
        parse_path("TrueFace_PreSocial/Other/FFHQ/00001.png")


def test_missing_or_empty_root_is_a_clear_error(tmp_path):
    with pytest.raises(ManifestError, match="does not exist"):
        build_manifest(tmp_path / "nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="holds no files"):
        build_manifest(tmp_path / "empty", progress=False)


def test_manifest_of_another_dataset_is_refused(synth_root, tmp_path):
    manifest, _ = build_manifest(synth_root, progress=False)
    write_manifest(manifest, tmp_path / "manifest.parquet", "synthetic")
    assert len(read_manifest(tmp_path / "manifest.parquet", "synthetic")) == len(manifest)
    with pytest.raises(ManifestError, match="written for dataset 'synthetic'"):
        read_manifest(tmp_path / "manifest.parquet", "trueface")


def test_spellings_of_one_image_across_platforms_share_one_source():
    """TrueFace copies name a fake "seed1234.png" before sharing and "001234_TL.jpeg" after, put the
    classes in "0_Real"/"1_Fake" on some platforms and the first StyleGAN in "StyleGAN1": one image's
    copies must still share one source_id, or they would be split apart (test images seen in training)."""
    fake = ["TrueFace_PreSocial/Fake/StyleGAN1/images-psi-0.5/seed1234.png",
            "TrueFace_PostSocial/Telegram/1_Fake/StyleGAN/images-psi-0.5/001234_TL.jpeg",
            "TrueFace_PostSocial/Facebook/Train/Fake/StyleGAN/images-psi-0.5/seed1234_FB.jpg",
            "TrueFace_PostSocial/Twitter/Fake/stylegan/images-psi-0.5/0001234_TW.jpg"]
    infos = [parse_path(p) for p in fake]
    assert {i.source_id for i in infos} == {"fake/stylegan/images-psi-0.5/1234"}
    assert {(i.label, i.generator, i.psi) for i in infos} == {(1, "stylegan", 0.5)}
    real = [parse_path("TrueFace_PreSocial/Real/FFHQ/00042.png"),
            parse_path("TrueFace_PostSocial/Twitter/0_Real/FFHQ/00042_TW.jpg")]
    assert {i.source_id for i in real} == {"real/ffhq/42"} and {i.label for i in real} == {0}
    # other numbers, generators or psi stay apart
    assert parse_path("TrueFace_PostSocial/Telegram/1_Fake/StyleGAN/images-psi-0.5/001235_TL.jpeg").source_id \
        != infos[0].source_id
    assert parse_path("TrueFace_PreSocial/Fake/StyleGAN2/conf-f-psi-0.5/seed1234.png").source_id != infos[0].source_id


def test_copies_without_a_presocial_partner_are_reported(synth_root):
    manifest, _ = build_manifest(synth_root, progress=False)
    assert unpartnered_copies(manifest) == {}  # the generator names every copy after its source
    renamed = manifest.copy()
    telegram = renamed["platform"] == "telegram"
    renamed.loc[telegram, "source_id"] = "x/" + renamed.loc[telegram, "source_id"]
    report = unpartnered_copies(renamed)
    assert list(report) == ["telegram"]
    n, total, examples = report["telegram"]
    assert n == total == int(telegram.sum()) and len(examples) == 3
    assert all("Telegram" in e for e in examples)


def test_copies_named_unlike_their_originals_stop_the_manifest(synth_copy, tmp_path):
    """Telegram's copies renamed so that no pre-social image matches: each would be split on its own
    (leakage), so the manifest stops, naming the platform and the key; a raised limit lets it through."""
    telegram = synth_copy / "TrueFace_PostSocial" / "Telegram"
    for f in [p for p in telegram.rglob("*.jpeg")]:
        f.rename(f.with_name("img" + f.name))
    proc = _manifest_cli(synth_copy, tmp_path / "m", 0.01)
    assert proc.returncode != 0 and not (tmp_path / "m" / "manifest.parquet").exists()
    assert "telegram images (100.0%" in proc.stderr and "data.max_unpartnered_fraction=0.05" in proc.stderr
    proc = _manifest_cli(synth_copy, tmp_path / "m2", 0.01, max_unpartnered_fraction=1)
    assert proc.returncode == 0 and (tmp_path / "m2" / "manifest.parquet").exists()
    assert "warning:" in proc.stderr and "telegram images have no pre-social image" in proc.stderr
