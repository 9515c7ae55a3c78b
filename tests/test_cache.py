"""The image cache's torchvision JPEG path (nvJPEG on a GPU) against the PIL path it replaces.

Run here on the CPU (torchvision's libjpeg-turbo decoder): the same batching, routing, resizing and
fallback code as on CUDA; only the decode device differs."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from deepfake_xai.data.cache import ImageCache, build_cache
from deepfake_xai.data.images import inspect_image

# (width, height, PIL mode, format): RGB and grayscale JPEGs go to torchvision, the rest to PIL.
FILES = [(200, 160, "RGB", "JPEG"), (160, 200, "RGB", "JPEG"), (120, 120, "L", "JPEG"),
         (180, 150, "CMYK", "JPEG"), (96, 96, "RGB", "PNG"), (64, 80, "RGB", "JPEG")]


def photo_like(w: int, h: int, seed: int) -> np.ndarray:
    """Gradients, a texture and sensor-like noise: enough detail for resampling to matter."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 / w, yy * 255 / h, ((xx + yy) % 64) * 4], -1) + rng.normal(0, 12, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture
def jpeg_folder(tmp_path):
    rows = []
    for i, (w, h, mode, fmt) in enumerate(FILES):
        path = tmp_path / f"{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(photo_like(w, h, i)).convert(mode).save(path, format=fmt, quality=90)
        rows.append({"image_id": f"img{i}", "path": path.name, **inspect_image(path)})
    return tmp_path, pd.DataFrame(rows)


@pytest.mark.parametrize("resize,crop", [(None, 64), (96, 64), (256, 224)])
def test_torchvision_jpeg_path_matches_pil(jpeg_folder, resize, crop):
    root, manifest = jpeg_folder
    pil = root / "pil.npy"
    tv = root / "tv.npy"
    build_cache(manifest, root, pil, root / "pil.parquet", resize=resize, center_crop=crop, progress=False)
    build_cache(manifest, root, tv, root / "tv.parquet", resize=resize, center_crop=crop, progress=False,
                jpeg_device="cpu")
    a, b = np.load(pil).astype(int), np.load(tv).astype(int)
    assert a.shape == b.shape == (len(FILES), crop, crop, 3)
    diff = np.abs(a - b).reshape(len(FILES), -1)
    if resize is None:  # no resampling: the same libjpeg-turbo decode, bit for bit
        assert diff.max() == 0
    else:  # PIL's bicubic vs torch's antialiased bicubic: rounding differences only
        assert diff.mean(axis=1).max() < 0.5 and diff.max() <= 6
    index = pd.read_parquet(root / "tv.parquet")
    assert index["decoder"].tolist() == ["torchvision-cpu"] * 3 + ["pil", "pil", "torchvision-cpu"]
    cache = ImageCache(tv, root / "tv.parquet")  # images land in manifest order whatever decoded them
    assert np.array_equal(cache.read(cache.rows_for(["img4"]))[0], np.load(pil)[4])


def test_a_file_torchvision_rejects_is_named(jpeg_folder):
    root, manifest = jpeg_folder
    (root / "0.jpg").write_bytes(b"not a jpeg at all" * 10)  # listed as an RGB JPEG by the manifest
    with pytest.raises(RuntimeError, match=r"cannot decode .*0\.jpg"):
        build_cache(manifest, root, root / "c.npy", root / "c.parquet", resize=None, center_crop=64,
                    progress=False, jpeg_device="cpu")
    assert not (root / "c.npy").exists() and not (root / "c.parquet").exists()


@pytest.mark.parametrize("chunk", [512, 7])
def test_a_read_returns_the_rows_asked_for_in_their_order_across_chunks(tmp_path, monkeypatch, chunk):
    """ImageCache.read reads in sorted chunks (no full-size temporary copy for a whole test set) and
    still returns each requested row, repeats included, where it was asked for."""
    from deepfake_xai.data import cache as cache_module

    monkeypatch.setattr(cache_module, "READ_CHUNK", chunk)
    arr = np.arange(1100 * 2 * 2 * 3, dtype=np.int64).reshape(1100, 2, 2, 3) % 251
    np.save(tmp_path / "c.npy", arr.astype(np.uint8))
    pd.DataFrame({"image_id": [f"i{k}" for k in range(1100)], "row": np.arange(1100)}).to_parquet(tmp_path / "c.parquet")
    cache = ImageCache(tmp_path / "c.npy", tmp_path / "c.parquet")
    rows = np.random.default_rng(0).permutation(1100)[:1030]
    rows = np.concatenate([rows, rows[:5]])  # repeats
    assert np.array_equal(cache.read(rows), arr[rows].astype(np.uint8))
    assert cache.read(np.array([], dtype=int)).shape == (0, 2, 2, 3)


def test_a_large_read_allocates_little_beyond_its_output(tmp_path, monkeypatch):
    """Reading a whole test set (8 GB for TrueFace's combined one) must not hold a second copy."""
    import tracemalloc

    from deepfake_xai.data import cache as cache_module

    monkeypatch.setattr(cache_module, "READ_CHUNK", 100)  # a twentieth of the read

    n = 2000
    np.save(tmp_path / "c.npy", np.zeros((n, 32, 32, 3), dtype=np.uint8))
    pd.DataFrame({"image_id": [f"i{k}" for k in range(n)], "row": np.arange(n)}).to_parquet(tmp_path / "c.parquet")
    cache = ImageCache(tmp_path / "c.npy", tmp_path / "c.parquet")
    rows = np.random.default_rng(0).permutation(n)
    tracemalloc.start()
    out = cache.read(rows)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1.2 * out.nbytes, (peak, out.nbytes)


def test_a_job_refuses_a_cache_its_settings_do_not_describe(tmp_path):
    """A cache of 32 px images given to a job whose settings say center_crop 64 (e.g. a `dvc exp run -S
    settings.m.center_crop=64` that params.yaml's cache name does not follow): refused, both named."""
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    from deepfake_xai.data.cache import CacheMismatch, ImageCache

    np.save(tmp_path / "c.npy", np.zeros((2, 32, 32, 3), np.uint8))
    pd.DataFrame({"image_id": ["a", "b"], "row": [0, 1]}).to_parquet(tmp_path / "c.parquet")
    cache = ImageCache(tmp_path / "c.npy", tmp_path / "c.parquet")
    assert cache.check_settings({"center_crop": 32}) is cache
    with pytest.raises(CacheMismatch, match="holds 32 x 32 px images, but the settings ask for center_crop 64"):
        cache.check_settings({"center_crop": 64})
    out = subprocess.run([sys.executable, "-m", "deepfake_xai", "train", "--cache", str(tmp_path / "c.npy"),
                          "--cache-index", str(tmp_path / "c.parquet"), "--manifest", str(tmp_path / "m.parquet"),
                          "--dataset", "d", "--settings-json", '{"arch": "resnet10t", "center_crop": 64}',
                          "--train-set", "presocial", "--out-dir", str(tmp_path / "o")], capture_output=True, text=True)
    assert out.returncode != 0 and "Traceback" not in out.stderr and "ask for center_crop 64" in out.stderr
