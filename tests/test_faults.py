"""Reliability and security: bad inputs are listed or converted, never fatal; killed jobs never leave a
file that passes for complete; config values never reach a shell unquoted; weights never unpickle
code. Each case is a real file or a real SIGKILL. (Hostile archives, checksums and the resumed
SIGKILL of training are in test_archive.py, test_download.py and test_train.py.)"""

import io
import json
import os
import shutil
import signal
import stat
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, SNAKEMAKE, copy_repo, run_snakemake, tiny_settings
from PIL import Image

from deepfake_xai.data.cache import ImageCache, build_cache
from deepfake_xai.data.images import BadImage, inspect_image
from deepfake_xai.data.manifest import build_manifest

PRE_REAL = Path("TrueFace_PreSocial/Real/FFHQ")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds almost none: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


def _image_bytes(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def _rgb(seed: int = 0, size: int = 32) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def _jpeg_with_thumbnail() -> bytes:
    """A JPEG whose EXIF block holds a thumbnail: a whole small JPEG, end-of-image marker included,
    before the main image's data."""
    thumb = _image_bytes(_rgb(5, 8), "JPEG")
    raw = _image_bytes(_rgb(4, 64), "JPEG")
    app1 = b"Exif\x00\x00" + b"II*\x00" + b"\x00" * 8 + thumb  # not valid TIFF, but a segment PIL skips
    return raw[:2] + b"\xff\xe1" + (len(app1) + 2).to_bytes(2, "big") + app1 + raw[2:]


# name -> (bytes, expected outcome): "reject:<substring of the reason>" or "convert"
def bad_inputs() -> dict[str, tuple[bytes, str]]:
    good_png = _image_bytes(_rgb(1), "PNG")
    good_jpg = _image_bytes(_rgb(2), "JPEG")
    gray = Image.fromarray(np.arange(32 * 32, dtype=np.uint8).reshape(32, 32))
    rgba = Image.fromarray(np.dstack([np.full((32, 32, 3), 200, np.uint8), np.full((32, 32), 128, np.uint8)]))
    sixteen = Image.fromarray(np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 64)  # mode I;16
    return {
        "91000.png": (b"", "reject:empty"),
        "91001.png": (good_png[: len(good_png) // 2], "reject:truncated"),
        "91002.jpg": (good_jpg[: len(good_jpg) // 2], "reject:truncated"),
        "91003.png": (b"%PDF-1.4 not an image at all", "reject:not an image"),
        "91004.png": (_png_header_only(100_000, 100_000), "reject:exceeds"),
        "91005.jpg": (good_png, "convert"),  # PNG bytes behind a .jpg name: decoded by content
        "91006.png": (_image_bytes(gray, "PNG"), "convert"),
        "91007.png": (_image_bytes(rgba, "PNG"), "convert"),
        "91008.jpg": (_image_bytes(_rgb(3).convert("CMYK"), "JPEG"), "convert"),
        "91009.png": (_image_bytes(sixteen, "PNG"), "convert"),
        # data after the end-of-image marker (phones and platforms append metadata): a whole image
        "91010.jpg": (good_jpg + b"TRAILER-METADATA" * 8, "convert"),
        # but a cut file padded with zeros (an interrupted copy) is still cut: PIL would decode the zeros
        "91011.jpg": (good_jpg[: len(good_jpg) // 2] + bytes(4096), "reject:truncated"),
        "91012.jpg": (_jpeg_with_thumbnail()[: -len(good_jpg) // 3] + bytes(64), "reject:truncated"),
    }


def test_bad_images_are_listed_or_converted_and_no_stage_crashes(synth_copy, tmp_path):
    cases = bad_inputs()
    for name, (data, _) in cases.items():
        (synth_copy / PRE_REAL / name).write_bytes(data)
    manifest, rejected = build_manifest(synth_copy, progress=False, max_rejected_fraction=0.2)
    reasons = dict(zip(rejected["path"].map(lambda p: Path(p).name), rejected["reason"]))
    kept = set(manifest["path"].map(lambda p: Path(p).name))
    for name, (_, outcome) in cases.items():
        if outcome.startswith("reject:"):
            assert outcome[7:] in reasons.get(name, "").lower(), (name, reasons.get(name))
            assert name not in kept
        else:
            assert name in kept and name not in reasons, name
    # the converted ones decode to RGB in the cache, as documented in load_rgb
    build_cache(manifest, synth_copy, tmp_path / "c.npy", tmp_path / "c.parquet", resize=None, center_crop=32,
                progress=False)
    cache = ImageCache(tmp_path / "c.npy", tmp_path / "c.parquet")
    ids = dict(zip(manifest["path"].map(lambda p: Path(p).name), manifest["image_id"]))
    gray = cache.read(cache.rows_for([ids["91006.png"]]))[0]
    assert gray.shape == (32, 32, 3) and (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    rgba = cache.read(cache.rows_for([ids["91007.png"]]))[0]
    assert abs(int(rgba[0, 0, 0]) - round(200 * 128 / 255)) <= 1  # composited on black
    sixteen = cache.read(cache.rows_for([ids["91009.png"]]))[0]
    assert sixteen.dtype == np.uint8 and sixteen.max() > 200  # 16-bit scaled to 8, not clipped to 255s
    wrong_ext = cache.read(cache.rows_for([ids["91005.jpg"]]))[0]
    assert (wrong_ext == np.asarray(_rgb(1))).all()  # lossless PNG content, whatever the name says
    trailer = cache.read(cache.rows_for([ids["91010.jpg"]]))[0]
    assert (trailer == np.asarray(Image.open(io.BytesIO(_image_bytes(_rgb(2), "JPEG"))).convert("RGB"))).all()


def test_unreadable_file_is_rejected_with_its_reason(synth_copy, tmp_path):
    """Root reads any file regardless of its mode: as root, the manifest runs with the two
    capabilities that bypass file permissions dropped (setpriv), so the mode applies."""
    locked = synth_copy / PRE_REAL / "92000.png"
    shutil.copy(next((synth_copy / PRE_REAL).glob("*.png")), locked)
    locked.chmod(0)
    out = tmp_path / "out"
    out.mkdir()
    cmd = [sys.executable, "-m", "deepfake_xai.cli", "--quiet", "manifest", "--root", str(synth_copy), "--dataset",
           "t", "--out", str(out / "m.parquet"), "--rejected", str(out / "r.parquet"), "--summary", str(out / "s.csv"),
           "--config-json", '{"max_rejected_fraction": 0.1}']
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("running as root without setpriv: file permissions cannot be made to apply")
        caps = "-dac_override,-dac_read_search"
        cmd = ["setpriv", f"--bounding-set={caps}", f"--inh-caps={caps}", *cmd]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rejected = pd.read_parquet(out / "r.parquet")
    row = rejected[rejected["path"].str.endswith("92000.png")]
    assert len(row) == 1 and "permission denied" in row["reason"].iloc[0]
    assert "92000.png" not in pd.read_parquet(out / "m.parquet")["path"].str.cat()


def test_a_test_set_with_no_images_fails_at_the_manifest(synth_copy, tmp_path):
    shutil.rmtree(synth_copy / "TrueFace_PostSocial" / "Telegram")
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "deepfake_xai.cli", "--quiet", "manifest", "--root", str(synth_copy), "--dataset", "t",
           "--out", str(out / "manifest.parquet"), "--rejected", str(out / "r.parquet"), "--summary",
           str(out / "s.csv"), "--require-test-parts", "presocial", "facebook", "telegram", "twitter"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "no test images for telegram" in proc.stderr and "test_sets" in proc.stderr
    assert not (out / "manifest.parquet").exists()  # so no training job can start from it
    ok = subprocess.run(cmd[:-4] + ["presocial", "facebook", "twitter"], capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(60_000, 60_000))
    decoded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: decoded.append(self.size))
    with pytest.raises(BadImage, match="exceeds"):
        inspect_image(p, full=True)
    assert not decoded  # the header was enough; 3.6 G pixels were never allocated


# ------------------------------------------------------------------ kills

def _kill_at(cmd: list[str], delay: float, env=None) -> int:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    return proc.wait()


def _same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


def _killed_runs_never_leave_a_partial_file(cmd, outputs, reference, ref_seconds, check_complete,
                                            same=_same_bytes, fractions=(0.2, 0.4, 0.6, 0.8, 0.95)):
    """Kill ``cmd`` at fractions of the reference run's wall time (so the kills land inside the run on a
    fast or a slow machine alike); every output is then absent or complete; finally a full run writes
    what the reference run wrote."""
    killed = 0
    for f in fractions:
        for o in outputs:
            Path(o).unlink(missing_ok=True)
        rc = _kill_at(cmd, f * ref_seconds)
        killed += rc == -signal.SIGKILL
        for o in outputs:
            if Path(o).exists():
                check_complete(Path(o))
    assert killed >= 1, f"every run finished before the kill (reference run {ref_seconds:.2f} s): nothing was tested"
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    for o, ref in zip(outputs, reference):
        check_complete(Path(o))
        assert same(Path(o), Path(ref))
    return killed


def _timed_run(cmd: list[str]) -> float:
    """Run ``cmd`` to completion (it must succeed) and return its wall time in seconds."""
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    return time.perf_counter() - t0


def test_kill_during_manifest_and_cache_writing(synth_root, tmp_path):
    py = [sys.executable, "-m", "deepfake_xai.cli", "--quiet"]
    ref, out = tmp_path / "ref", tmp_path / "out"
    ref.mkdir(), out.mkdir()

    def manifest_cmd(d):
        return py + ["manifest", "--root", str(synth_root), "--dataset", "t", "--out", str(d / "manifest.parquet"),
                     "--rejected", str(d / "rejected.parquet"), "--summary", str(d / "summary.csv"),
                     "--config-json", '{"verify": true}']

    seconds = _timed_run(manifest_cmd(ref))
    n_rows = len(pd.read_parquet(ref / "manifest.parquet"))
    killed = _killed_runs_never_leave_a_partial_file(
        manifest_cmd(out), [out / "manifest.parquet"], [ref / "manifest.parquet"], seconds,
        lambda p: (len(pd.read_parquet(p)) == n_rows) or pytest.fail(f"{p} is incomplete"))

    def cache_cmd(d):
        return py + ["cache", "--manifest", str(ref / "manifest.parquet"), "--dataset", "t", "--root",
                     str(synth_root), "--out", str(d / "c.npy"), "--index", str(d / "c.parquet"),
                     "--resize", "none", "--center-crop", "32", "--workers", "1"]

    seconds = _timed_run(cache_cmd(ref))

    def cache_complete(p: Path):
        if p.suffix == ".npy":
            assert np.load(p, mmap_mode="r").shape[0] == n_rows
        else:
            assert len(pd.read_parquet(p)) == n_rows

    killed += _killed_runs_never_leave_a_partial_file(
        cache_cmd(out), [out / "c.npy", out / "c.parquet"], [ref / "c.npy", ref / "c.parquet"],
        seconds, cache_complete)
    print(f"{killed} kills survived")


def test_kill_during_heatmap_writing(prepared, tmp_path):
    from safetensors.torch import save_file

    from deepfake_xai.evaluate import PRED_COLUMNS
    from deepfake_xai.explain.bulk import read_maps
    from deepfake_xai.models import create_model

    settings = tiny_settings()
    save_file(create_model("mnasnet_100").state_dict(), str(tmp_path / "w.safetensors"))
    manifest = pd.read_parquet(prepared["manifest"])
    test = manifest[manifest["split"] == "test"].head(8).copy()
    test["prob"] = np.linspace(0, 1, len(test))
    test[PRED_COLUMNS].to_parquet(tmp_path / "pred.parquet")

    def cmd(out):
        return [sys.executable, "-m", "deepfake_xai.cli", "--quiet", "explain-cell", "--weights",
                str(tmp_path / "w.safetensors"), "--settings-json", json.dumps(settings), "--cache", str(prepared["cache"]),
                "--cache-index", str(prepared["index"]), "--manifest", str(prepared["manifest"]), "--dataset",
                prepared["dataset"], "--predictions", str(tmp_path / "pred.parquet"), "--n-images", "8",
                "--panels", "0", "--out", str(out), "--panels-dir", str(tmp_path / "panels"), "--device", "cpu"]

    seconds = _timed_run(cmd(tmp_path / "ref.npz"))
    ref = read_maps(tmp_path / "ref.npz")

    def complete(p: Path):
        got = read_maps(p)
        assert set(got["maps"]) == set(ref["maps"]) and len(got["image_ids"]) == 8

    def same_maps(a: Path, b: Path) -> bool:  # the file also records timings, so compare the content
        x, y = read_maps(a), read_maps(b)
        return (list(x["image_ids"]) == list(y["image_ids"])
                and all(np.array_equal(x["maps"][m], y["maps"][m]) for m in y["maps"]))

    out = tmp_path / "maps.npz"
    _killed_runs_never_leave_a_partial_file(cmd(out), [out], [tmp_path / "ref.npz"], seconds, complete,
                                            same_maps, fractions=(0.3, 0.6, 0.9))


def test_killed_snakemake_rerun_gives_the_uninterrupted_results(tmp_path):
    cell = "results/tiny/metrics/efficientnet_b0/presocial/twitter.json"
    clean, killed = copy_repo(tmp_path / "clean"), copy_repo(tmp_path / "killed")
    for wd in (clean, killed):
        shutil.copy(REPO / "tests/data/tiny.yaml", wd / "tiny.yaml")
    run_snakemake(clean, cell, "--cores", "2", "--configfile", "tiny.yaml")
    proc = subprocess.Popen([SNAKEMAKE, cell, "--cores", "2", "--configfile", "tiny.yaml"], cwd=killed,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    train_log = killed / "results/tiny/logs/train/efficientnet_b0/presocial.log"  # appears as the job starts
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None and not train_log.exists():
        time.sleep(0.05)
    time.sleep(0.5)  # into the training job
    assert proc.poll() is None, "snakemake finished before the kill"
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and every job it started
    proc.wait()
    assert not (killed / cell).exists()
    run_snakemake(killed, "--unlock", "--configfile", "tiny.yaml")  # the killed run left its lock
    run_snakemake(killed, cell, "--cores", "2", "--configfile", "tiny.yaml")  # the default profile reruns incomplete jobs
    assert (killed / cell).read_text() == (clean / cell).read_text()


# ------------------------------------------------------------------ security

def test_a_config_value_with_shell_syntax_never_reaches_a_shell(tmp_path):
    wd = copy_repo(tmp_path / "wd")
    cfg = (REPO / "tests/data/tiny.yaml").read_text()
    marker = tmp_path / "PWNED"
    evil = f"/nonexistent/w.safetensors; touch {marker}; rm -rf {tmp_path / 'wd'}"
    cfg = cfg.replace("  mnasnet_100:\n", f"  mnasnet_100: {{pretrained: true, pretrained_from: {json.dumps(evil)}}}\n")
    (wd / "evil.yaml").write_text(cfg)
    cell = "results/tiny/models/mnasnet_100/presocial/train.json"
    proc = run_snakemake(wd, cell, "--cores", "1", "--configfile", "evil.yaml", check=False)
    assert proc.returncode != 0  # the pretrained job fails: there is no such weights file ...
    log = (wd / "resources/pretrained/logs/mnasnet_100.log").read_text()
    assert "/nonexistent/w.safetensors; touch" in log  # ... named whole, as one argument
    assert not marker.exists() and (wd / "Snakefile").exists()  # ... and nothing after ';' ran


class _Payload:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['DFX_MARKER']}",))


def test_pickled_code_in_weights_is_never_run(tmp_path, monkeypatch):
    from deepfake_xai.models import create_model

    marker = tmp_path / "EXECUTED"
    monkeypatch.setenv("DFX_MARKER", str(marker))
    evil = tmp_path / "weights.pt"
    import torch

    torch.save({"conv_stem.weight": _Payload()}, evil)  # torch's own format, the payload inside its pickle
    with pytest.raises(ValueError, match="not loadable as plain tensors"):
        create_model("mnasnet_100", pretrained_file=str(evil))
    assert not marker.exists()


def test_downloaded_files_are_not_executable(tmp_path):
    from deepfake_xai.io import write_bytes

    write_bytes(tmp_path / "archive.tar", b"#!/bin/sh\necho hi\n")  # the download's final write path
    mode = (tmp_path / "archive.tar").stat().st_mode
    assert not mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_doctor_reports_problems_by_name(tmp_path):
    good = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "doctor", "--config",
                           str(REPO / "config/config.yaml"), "--results", str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "[OK  ] torch: 2.14.1" in good.stdout and "[OK  ] config:" in good.stdout
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text(f"data: {{source: trueface, root: {tmp_path / 'no-such-folder'}}}\n")
    bad = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "doctor", "--config",
                          str(REPO / "config/trueface.yaml"), str(bad_cfg), "--results", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert bad.returncode == 1
    assert f"[FAIL] dataset: data.root={str(tmp_path / 'no-such-folder')!r} is not a folder" in bad.stdout
