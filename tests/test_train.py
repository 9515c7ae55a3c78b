"""Training: outputs, resume after SIGKILL, determinism; the cache; predictions."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_settings
from safetensors.torch import load_file

from deepfake_xai.data.cache import ImageCache, preprocess
from deepfake_xai.data.manifest import read_manifest, write_manifest
from deepfake_xai.evaluate import pool, predict_parts
from deepfake_xai.runtime import crop_batch
from deepfake_xai.train import train


def _train_cmd(prepared, out_dir, settings, train_set="presocial"):
    return [sys.executable, "-m", "deepfake_xai.cli", "--quiet", "train", "--cache", str(prepared["cache"]),
            "--cache-index", str(prepared["index"]), "--manifest", str(prepared["manifest"]),
            "--dataset", prepared["dataset"], "--settings-json", json.dumps(settings),
            "--train-set", train_set, "--out-dir", str(out_dir), "--threads", "1", "--device", "cpu"]


def test_cache_holds_every_image_decoded_once(prepared):
    cache = ImageCache(prepared["cache"], prepared["index"])
    manifest = read_manifest(prepared["manifest"])
    assert cache.array.shape == (len(manifest), 32, 32, 3) and cache.array.dtype == np.uint8
    row = manifest.iloc[5]
    from PIL import Image

    expected = preprocess(Image.open(prepared["root"] / row["path"]).convert("RGB"), None, 32)
    assert np.array_equal(cache.read(cache.rows_for([row["image_id"]]))[0], expected)


def test_preprocess_resizes_the_shorter_side_then_crops():
    from PIL import Image

    img = Image.new("RGB", (100, 50))
    assert preprocess(img, 40, 32).shape == (32, 32, 3)
    assert preprocess(Image.new("RGB", (20, 20)), None, 32).shape == (32, 32, 3)  # upscaled first


def test_crop_batch_gathers_per_sample_crops_and_flips():
    x = torch.arange(2 * 6 * 6 * 3).reshape(2, 6, 6, 3)
    offsets = torch.tensor([[0, 0], [2, 1]])
    flips = torch.tensor([False, True])
    out = crop_batch(x, 4, offsets, flips)
    assert torch.equal(out[0], x[0, 0:4, 0:4])
    assert torch.equal(out[1], x[1, 2:6, 1:5].flip(1))
    assert torch.equal(crop_batch(x, 4), x[:, 1:5, 1:5])


def test_training_writes_weights_log_and_summary(prepared, tmp_path):
    settings = tiny_settings(epochs=2)
    summary = train(cache=ImageCache(prepared["cache"], prepared["index"]),
                    manifest=read_manifest(prepared["manifest"]), train_set="telegram",
                    settings=settings, out_dir=tmp_path, threads=1, device="cpu", progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log["epoch"]) == [1, 2]
    on_disk = json.loads((tmp_path / "train.json").read_text())
    assert on_disk["best_epoch"] in (1, 2) and on_disk["parameters"] == summary["parameters"] > 1e6
    assert on_disk["device"] == "cpu" and on_disk["images_per_s"] > 0
    assert set(load_file(str(tmp_path / "model.safetensors")))  # loadable
    assert not (tmp_path / "checkpoint.pt").exists()


def test_sigkill_mid_training_resumes_and_matches_an_uninterrupted_run(prepared, tmp_path):
    settings = tiny_settings(epochs=4)
    ref = tmp_path / "ref"
    subprocess.run(_train_cmd(prepared, ref, settings), check=True, capture_output=True)

    out = tmp_path / "killed"
    proc = subprocess.Popen(_train_cmd(prepared, out, settings), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None, "training ended before it wrote a checkpoint"
        assert time.time() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "model.safetensors").exists()

    done = subprocess.run(_train_cmd(prepared, out, settings), check=True, capture_output=True, text=True)
    assert "resuming from" in done.stdout
    summary = json.loads((out / "train.json").read_text())
    assert summary["resumed_after_epoch"] >= 1 and summary["epochs"] == 4
    assert list(pd.read_csv(out / "log.csv")["epoch"]) == [1, 2, 3, 4]
    a, b = load_file(str(ref / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_checkpoint_of_other_settings_is_not_resumed(prepared, tmp_path):
    settings = tiny_settings(epochs=2)
    subprocess.run(_train_cmd(prepared, tmp_path, settings), check=True, capture_output=True)
    torch.save({"ident": "other"}, tmp_path / "checkpoint.pt")
    done = subprocess.run(_train_cmd(prepared, tmp_path, settings), check=True, capture_output=True, text=True)
    assert "ignoring" in done.stdout and json.loads((tmp_path / "train.json").read_text())["resumed_after_epoch"] is None


def test_predictions_cover_each_test_part_and_pool(prepared, tmp_path):
    settings = tiny_settings(epochs=1)
    train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=read_manifest(prepared["manifest"]),
          train_set="presocial", settings=settings, out_dir=tmp_path, threads=1, device="cpu", progress=False)
    manifest = read_manifest(prepared["manifest"])
    parts = ["presocial", "facebook", "telegram", "twitter"]
    preds = predict_parts(weights=tmp_path / "model.safetensors", settings=settings,
                          cache=ImageCache(prepared["cache"], prepared["index"]), manifest=manifest, parts=parts)
    for part in parts:
        want = manifest[(manifest["platform"] == part) & (manifest["split"] == "test")]
        assert sorted(preds[part]["image_id"]) == sorted(want["image_id"])
        assert preds[part]["prob"].between(0, 1).all()
    combined = pool(list(preds.values()))
    assert len(combined) == sum(len(p) for p in preds.values())
    with pytest.raises(ValueError, match="two parts"):
        pool([preds["presocial"], preds["presocial"]])


def test_combined_from_fewer_parts_than_the_dataset_has_is_refused_before_training(prepared, tmp_path):
    cmd = _train_cmd(prepared, tmp_path / "out", tiny_settings(epochs=1)) + [
        "--parts", "presocial", "twitter", "--predictions", str(tmp_path / "p.parquet"), str(tmp_path / "t.parquet"),
        "--combined", str(tmp_path / "c.parquet")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--combined pools every part of the dataset" in proc.stderr
    assert "presocial twitter" in proc.stderr and not (tmp_path / "out").exists()  # nothing trained


def test_checkpoint_of_other_splits_is_not_resumed(prepared, tmp_path):
    """After a split change that keeps the number of training images, a killed run's checkpoint
    (weights that saw images now in test) must not be resumed."""
    settings = tiny_settings(epochs=4)
    out = tmp_path / "run"
    proc = subprocess.Popen(_train_cmd(prepared, out, settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists():
        assert proc.poll() is None and time.time() < deadline, "training ended before it wrote a checkpoint"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    manifest = read_manifest(prepared["manifest"])  # its dataset fingerprint kept: only the split differs
    pre = manifest[manifest["platform"] == "presocial"]
    a = pre[(pre["split"] == "train") & (pre["label"] == 1)]["source_id"].iloc[0]
    b = pre[(pre["split"] == "test") & (pre["label"] == 1)]["source_id"].iloc[0]
    swapped = manifest.copy()
    swapped.loc[manifest["source_id"] == a, "split"] = "test"
    swapped.loc[manifest["source_id"] == b, "split"] = "train"
    resplit = {**prepared, "manifest": tmp_path / "resplit.parquet"}
    write_manifest(swapped, resplit["manifest"], prepared["dataset"])
    done = subprocess.run(_train_cmd(resplit, out, settings), check=True, capture_output=True, text=True)
    summary = json.loads((out / "train.json").read_text())
    assert "ignoring" in done.stdout and summary["resumed_after_epoch"] is None
    assert summary["n_train"] == int((pre["split"] == "train").sum())  # the same count: only the images differ


def test_crop_larger_than_the_cached_images_is_an_error():
    with pytest.raises(ValueError, match="a 96 px model input cannot be cropped from 64 x 64"):
        crop_batch(torch.zeros(2, 64, 64, 3), 96)


def test_a_diverging_training_stops_with_a_clear_error_and_writes_no_weights(prepared, tmp_path):
    settings = tiny_settings(epochs=2, lr=1e30)  # the first step blows the weights up
    with pytest.raises(FloatingPointError, match="the model diverged: lower the learning rate"):
        train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=read_manifest(prepared["manifest"]),
              train_set="presocial", settings=settings, out_dir=tmp_path, threads=1, device="cpu", progress=False)
    assert not (tmp_path / "model.safetensors").exists() and not (tmp_path / "train.json").exists()


def test_one_class_in_train_is_refused_and_in_val_is_reported(prepared, tmp_path, capsys):
    manifest = read_manifest(prepared["manifest"])
    real = manifest["label"] == 0
    only_fakes = manifest.assign(split=np.where(real & (manifest["split"] == "train"), "test", manifest["split"]))
    with pytest.raises(ValueError, match=r"presocial: the train images are all fake \(\d+ images\): a detector"):
        train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=only_fakes, train_set="presocial",
              settings=tiny_settings(epochs=1), out_dir=tmp_path, threads=1, device="cpu", progress=False)
    assert not (tmp_path / "model.safetensors").exists()
    no_real_val = manifest.assign(split=np.where(real & (manifest["split"] == "val"), "train", manifest["split"]))
    train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=no_real_val, train_set="presocial",
          settings=tiny_settings(epochs=1), out_dir=tmp_path, threads=1, device="cpu", progress=False)
    assert "warning: presocial: the val images are all fake" in capsys.readouterr().err


def test_a_checkpoint_resumes_only_on_the_same_dataset_files(prepared, tmp_path, monkeypatch):
    """A run stopped after epoch 1 resumes there, unless the dataset's files changed under the same
    image ids (regenerated data): its fingerprint is part of the checkpoint's identity."""
    from deepfake_xai import train as train_module

    settings = tiny_settings(epochs=2)
    manifest = read_manifest(prepared["manifest"])
    assert manifest.attrs["fingerprint"]
    real_lr_at = train_module.lr_at

    def stop_in_epoch_2(step, total, s, steps_per_epoch):
        if step >= steps_per_epoch:
            raise KeyboardInterrupt  # as a kill would, after epoch 1's checkpoint
        return real_lr_at(step, total, s, steps_per_epoch)

    def run(m):
        return train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=m, train_set="presocial",
                     settings=settings, out_dir=tmp_path, threads=1, device="cpu", progress=False)

    monkeypatch.setattr(train_module, "lr_at", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        run(manifest)
    monkeypatch.setattr(train_module, "lr_at", real_lr_at)
    other = manifest.copy()
    other.attrs["fingerprint"] = "regenerated"
    checkpoint = (tmp_path / "checkpoint.pt").read_bytes()
    assert run(other)["resumed_after_epoch"] is None
    (tmp_path / "checkpoint.pt").write_bytes(checkpoint)
    assert run(manifest)["resumed_after_epoch"] == 1


def test_an_epoch_with_nan_validation_predictions_is_never_the_best(prepared, tmp_path, monkeypatch):
    """NaN probabilities all read as "real": balanced accuracy 0.5, which beats a worse first epoch."""
    from deepfake_xai import train as train_module

    calls = []

    def predict(self, batches):
        calls.append(1)
        if len(calls) == 1:  # epoch 1: every validation image wrong, balanced accuracy 0
            return 1.0 - batches.labels.astype(float), 1.0
        return np.full(len(batches.labels), np.nan), float("nan")

    monkeypatch.setattr(train_module.Runner, "predict", predict)
    summary = train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=read_manifest(prepared["manifest"]),
                    train_set="presocial", settings=tiny_settings(epochs=2), out_dir=tmp_path, threads=1,
                    device="cpu", progress=False)
    assert len(calls) == 2 and summary["best_epoch"] == 1


@pytest.fixture
def two_gpus(monkeypatch):
    """What torch reports for cuda:0, compute capability 7 (a V100), and cuda:1, 8 (an A100), named
    "card 0" and "card 1"; modules stay where they are (no GPU here)."""
    from types import SimpleNamespace

    capability = {0: 7, 1: 8}
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda d: SimpleNamespace(major=capability[torch.device(d).index]))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: f"card {torch.device(d).index}")
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)


def test_amp_uses_bf16_only_where_the_gpu_computes_it_natively(two_gpus, capsys):
    """On a V100 or T4 (compute capability 7.x) bf16 autocast is emulated, slower than fp32: the
    runner falls back to fp32 there and says so; an A100/H100 (8.0+) gets bf16."""
    from deepfake_xai import runtime as T

    assert not T.native_bf16(torch.device("cpu"))
    model = torch.nn.Conv2d(3, 2, 1)
    old, new = (T.Runner(model, torch.device("cuda", i), {"image_size": 8, "amp": True}) for i in (0, 1))
    assert (old.amp, new.amp) == (False, True)
    assert "card 0 has no native bf16" in capsys.readouterr().err
    assert not T.Runner(model, torch.device("cuda", 0), {"image_size": 8, "amp": False}).amp
    assert "native bf16" not in capsys.readouterr().err  # amp off: nothing to fall back from


def test_precise_bn_averages_exactly_the_batches_it_reads_and_zero_keeps_the_running_averages():
    from types import SimpleNamespace

    from deepfake_xai.runtime import Batches, Runner
    from deepfake_xai.train import recalibrate_batchnorm

    images = np.random.default_rng(0).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    cache = SimpleNamespace(read=lambda rows: images[rows])
    model = torch.nn.BatchNorm2d(3)
    runner = Runner(model, torch.device("cpu"), {"image_size": 4})
    before = model.running_mean.clone()
    batches = Batches(cache, np.arange(40), np.zeros(40, dtype=np.int64), 8, prefetch=0, drop_last=True)
    recalibrate_batchnorm(runner, batches, 0)
    assert torch.equal(model.running_mean, before)
    recalibrate_batchnorm(runner, batches, 20)  # whole batches: 24 images, the first three
    seen = runner.inputs(torch.from_numpy(images[:24]))
    assert torch.allclose(model.running_mean, seen.mean((0, 2, 3)), atol=1e-5)
    per_batch_var = torch.stack([b.var((0, 2, 3), unbiased=True) for b in seen.split(8)])
    assert torch.allclose(model.running_var, per_batch_var.mean(0), atol=1e-5)  # batch statistics, averaged
    assert model.momentum == 0.1 and not model.training


@pytest.mark.parametrize("images", [0, 2048])
def test_the_bn_recalibration_setting_reaches_training(prepared, tmp_path, monkeypatch, images):
    from deepfake_xai import train as train_module

    asked = []
    monkeypatch.setattr(train_module, "recalibrate_batchnorm", lambda runner, batches, n: asked.append(n))
    train(cache=ImageCache(prepared["cache"], prepared["index"]), manifest=read_manifest(prepared["manifest"]),
          train_set="presocial", settings=tiny_settings(epochs=2, bn_recalibration=images), out_dir=tmp_path,
          threads=1, device="cpu", progress=False)
    assert asked == [images, images]


def test_only_rank_zero_says_that_amp_falls_back(two_gpus, monkeypatch, capsys):
    from deepfake_xai import runtime as T

    for rank in ("1", "0"):
        monkeypatch.setenv("RANK", rank)
        assert not T.Runner(torch.nn.Conv2d(3, 2, 1), torch.device("cuda", 0), {"image_size": 8}).amp
        assert ("no native bf16" in capsys.readouterr().err) == (rank == "0")
