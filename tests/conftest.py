import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SNAKEMAKE = str(Path(PY).with_name("snakemake"))

# A small synthetic dataset: enough images for every (platform, class, split) to be non-empty.
SMALL_SYNTH = {
    "seed": 3, "image_size": 32, "render_scale": 2, "real": 24,
    "fake": {"stylegan": {0.5: 6, 0.7: 6}, "stylegan2": {0.5: 6, 1.0: 6}},
    "shared_fraction": 0.5,
}


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """A small synthetic TrueFace-like dataset, generated once per test session (read-only use)."""
    from deepfake_xai.data.synth import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth") / "data"
    generate(root, SynthConfig.from_dict(SMALL_SYNTH), progress=False)
    return root


@pytest.fixture
def synth_copy(synth_root, tmp_path) -> Path:
    """A private, writable copy of the small dataset."""
    dst = tmp_path / "data"
    shutil.copytree(synth_root, dst)
    return dst


def copy_repo(dst: Path, package: bool = False) -> Path:
    """The tracked workflow files copied into ``dst`` (no results, resources or .snakemake); with
    ``package``, the library too, which :func:`run_snakemake` then runs instead of the installed one
    (so a test may edit it)."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "environment.yml", "pyproject.toml", *(["src"] if package else [])):
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def run_snakemake(workdir: Path, *args: str, check: bool = True, timeout: int = 900):
    """Snakemake in ``workdir``; a copy of the library there (``copy_repo(..., package=True)``) is the
    one Snakemake and its jobs import."""
    env = None
    if (workdir / "src" / "deepfake_xai").is_dir():
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(workdir / "src"),
                                                                        os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="session")
def prepared(synth_root, tmp_path_factory) -> dict:
    """The small dataset's manifest and 32 px cache, built once per session."""
    from deepfake_xai.data.cache import build_cache
    from deepfake_xai.data.manifest import build_manifest, write_manifest

    out = tmp_path_factory.mktemp("prepared")
    manifest, _ = build_manifest(synth_root, progress=False)
    write_manifest(manifest, out / "manifest.parquet", "tiny")
    build_cache(manifest, synth_root, out / "cache.npy", out / "cache.parquet", resize=None,
                center_crop=32, progress=False)
    return {"root": synth_root, "manifest": out / "manifest.parquet", "cache": out / "cache.npy",
            "index": out / "cache.parquet", "dataset": "tiny"}


def tiny_settings(**over) -> dict:
    s = dict(arch="mnasnet_100", target_layer="bn2", resize=None, center_crop=32, image_size=32, epochs=3,
             batch_size=8, optimizer="adamw", lr=1e-3, weight_decay=1e-4, momentum=0.9, schedule="cosine",
             warmup_epochs=0, label_smoothing=0.0, seed=0, random_crop=True, hflip=True, jpeg_augment=0.0,
             max_train_images=None, pretrained=False, pretrained_from=None, pretrained_sha256=None, freeze_backbone=False, amp=True, channels_last=True,
             compile=False, loader_workers=2)
    s.update(over)
    return s
