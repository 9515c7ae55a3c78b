"""The decoded image cache: every image decoded, resized/cropped once into one uint8 array.

Training reads batches from this array by memory map; epochs never decode files. Measured on an
H100 (efficientnet_b2, 256 px, bf16): a DataLoader decoding 1024 px PNGs each step fed 129 images/s,
the memory-mapped cache 2,105 images/s (0.97x of tensors already on the GPU).

Layout: ``<name>.npy`` holds an (N, C, C, 3) uint8 array (C = center_crop) in manifest order, and
``<name>.parquet`` maps ``image_id`` to its row. Both are written to temporary files and renamed,
the array last, so a cache that exists is complete.

Preprocessing: the shorter side is resized to ``resize`` (``None`` keeps the native resolution),
then the center ``center_crop`` square is cut; an image smaller than that is upscaled first.
Note that resizing (in particular downscaling) weakens the high-frequency traces (upsampling
checkerboards, noise residuals) that synthetic-image detectors rely on: prefer cropping.

Decoding: PIL in ``workers`` processes by default. With ``jpeg_device`` set, RGB and grayscale
JPEGs are decoded in batches by torchvision instead (``"cuda"``: nvJPEG on the GPU, about 8,100
images/s on an H100 against 754 for PIL in 16 processes; ``"cpu"``: libjpeg-turbo), resized and
cropped on that device; every other file still goes through PIL. The two decoders differ by a few
grey levels when downscaling (IDCT and resampling rounding); upscaling an image smaller than the
crop can differ by more on noise-like content (PIL rounds to uint8 between its two passes, torch does
not: up to 17 levels measured), so a cache records which one built it.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..io import atomic_path
from .images import load_rgb


def resized_size(w: int, h: int, resize: int | None, center_crop: int) -> tuple[int, int]:
    """(width, height) after resizing the shorter side to ``resize`` (never below the crop)."""
    target = max(resize if resize is not None else min(w, h), center_crop)
    if min(w, h) == target:
        return w, h
    f = target / min(w, h)
    return max(target, round(w * f)), max(target, round(h * f))


def preprocess(img: Image.Image, resize: int | None, center_crop: int) -> np.ndarray:
    """Resize the shorter side to ``resize`` (if set), then center-crop ``center_crop`` pixels."""
    size = resized_size(*img.size, resize, center_crop)
    if size != img.size:
        img = img.resize(size, Image.Resampling.BICUBIC)
    w, h = img.size
    left, top = (w - center_crop) // 2, (h - center_crop) // 2
    return np.asarray(img.crop((left, top, left + center_crop, top + center_crop)), dtype=np.uint8)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _torch_preprocess(img, resize: int | None, center_crop: int):
    """:func:`preprocess` for a decoded (3, H, W) uint8 tensor, on its device: bicubic with
    antialiasing (PIL's filter), rounded back to uint8, then the same center crop."""
    import torch
    import torch.nn.functional as F

    h, w = img.shape[-2:]
    nw, nh = resized_size(w, h, resize, center_crop)
    if (nw, nh) != (w, h):
        img = F.interpolate(img[None].float(), size=(nh, nw), mode="bicubic", antialias=True,
                            align_corners=False)[0].round_().clamp_(0, 255).to(torch.uint8)
    left, top = (nw - center_crop) // 2, (nh - center_crop) // 2
    return img[:, top:top + center_crop, left:left + center_crop].permute(1, 2, 0)


def _torchvision_jpegs(paths: list[str], resize: int | None, center_crop: int, device: str,
                       batch: int = 64, readers: int = 8) -> Iterator[np.ndarray]:
    """Decode JPEGs in batches with torchvision on ``device``; files are read by threads while the
    previous batch decodes. A batch the decoder rejects is decoded image by image through PIL,
    which names the bad file."""
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    dev = torch.device(device)
    chunks = [paths[i:i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(readers) as pool:
        pending = [pool.submit(_read, p) for p in chunks[0]] if chunks else []
        for k, chunk in enumerate(chunks):
            data = [f.result() for f in pending]
            pending = [pool.submit(_read, p) for p in chunks[k + 1]] if k + 1 < len(chunks) else []
            try:
                tensors = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for d in data]
                decoded = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=dev)
                crops = torch.stack([_torch_preprocess(img, resize, center_crop) for img in decoded])
                # .cpu() also waits for this batch's kernels: keep a synchronization here, since the CUDA
                # decoder writes on its own stream into memory this stream may have freed but still be
                # reading (pytorch/vision#9606)
                yield from crops.cpu().numpy()
            except RuntimeError:
                for path in chunk:
                    yield _decode((path, resize, center_crop))


def _pil_images(jobs: list[tuple[str, int | None, int]], workers: int) -> Iterator[np.ndarray]:
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            yield from pool.map(_decode, jobs, chunksize=32)
    else:
        yield from map(_decode, jobs)


def _decode(args: tuple[str, int | None, int]) -> np.ndarray:
    path, resize, crop = args
    try:
        return preprocess(load_rgb(path), resize, crop)
    except Exception as err:  # noqa: BLE001 - any decoder failure is a property of the file
        raise RuntimeError(
            f"cannot decode {path}: {err}; set data.verify: full to reject such files when the "
            "manifest is built"
        ) from None


def build_cache(
    manifest: pd.DataFrame,
    root: str | Path,
    out_npy: str | Path,
    out_index: str | Path,
    *,
    resize: int | None,
    center_crop: int,
    workers: int = 1,
    progress: bool = True,
    jpeg_device: str | None = None,
) -> int:
    """Decode every manifest image into the cache; return the number of images.

    ``jpeg_device`` (``"cuda"``, ``"cpu"``): decode the RGB and grayscale JPEGs with torchvision
    on that device (see the module's docstring); ``None``: PIL for every file.
    """
    from ..progress import progress_bar

    root = Path(root)
    n = len(manifest)
    paths = [str(root / p) for p in manifest["path"]]
    on_device = np.zeros(n, dtype=bool)
    if jpeg_device:
        if not {"format", "mode"} <= set(manifest.columns):
            raise ValueError("jpeg_device needs the manifest's format and mode columns: rebuild the manifest")
        on_device = (manifest["format"].to_numpy() == "JPEG") & np.isin(manifest["mode"].to_numpy(), ["RGB", "L"])
    with atomic_path(out_npy, suffix=".npy") as tmp_npy:
        arr = np.lib.format.open_memmap(tmp_npy, mode="w+", dtype=np.uint8,
                                        shape=(n, center_crop, center_crop, 3))
        bar = progress_bar(total=n, desc=f"cache {Path(out_npy).stem}", unit="img", disable=not progress)
        dev_rows, pil_rows = np.flatnonzero(on_device), np.flatnonzero(~on_device)
        for rows, images in (
            (dev_rows, _torchvision_jpegs([paths[i] for i in dev_rows], resize, center_crop, jpeg_device or "cpu")),
            (pil_rows, _pil_images([(paths[i], resize, center_crop) for i in pil_rows], workers)),
        ):
            for i, img in zip(rows, images):
                arr[i] = img
                bar.update()
        bar.close()
        arr.flush()
        del arr
        decoder = np.where(on_device, f"torchvision-{jpeg_device}", "pil")
        index = pd.DataFrame({"image_id": manifest["image_id"].to_numpy(), "row": np.arange(n), "decoder": decoder})
        with atomic_path(out_index, suffix=".parquet") as tmp_idx:
            index.to_parquet(tmp_idx, index=False)
    return n


READ_CHUNK = 512  # rows per memory-map read in ImageCache.read


class CacheMismatch(ValueError):
    """A cache that is not the one the job's settings describe."""


class ImageCache:
    """Read side of the cache: uint8 (N, C, C, 3) memory map plus ``image_id`` -> row."""

    def __init__(self, npy: str | Path, index: str | Path):
        self.npy, self.index_path = Path(npy), Path(index)
        for p in (self.npy, self.index_path):
            if not p.exists():
                raise FileNotFoundError(f"image cache file {p} does not exist: build it first (rule cache)")
        self.array = np.load(self.npy, mmap_mode="r")
        index = pd.read_parquet(self.index_path)
        if len(index) != len(self.array):
            raise ValueError(f"{self.index_path} lists {len(index)} images but {self.npy} holds "
                             f"{len(self.array)}: delete both and rebuild the cache")
        self.rows = pd.Series(index["row"].to_numpy(), index=index["image_id"].to_numpy())

    def check_settings(self, settings: dict) -> ImageCache:
        """Refuse a cache whose images are not the settings' ``center_crop`` (a model trained or explained
        on another preprocessing than its settings record). Returns the cache."""
        crop = int(settings.get("center_crop") or self.array.shape[1])
        if self.array.shape[1:3] != (crop, crop):
            raise CacheMismatch(f"{self.npy} holds {self.array.shape[1]} x {self.array.shape[2]} px images, but the "
                                f"settings ask for center_crop {crop}: give the cache built for these settings (after "
                                "changing resize or center_crop, regenerate params.yaml with dvc_params.py, or let "
                                "Snakemake build it)")
        return self

    def rows_for(self, image_ids) -> np.ndarray:
        try:
            return self.rows.loc[list(image_ids)].to_numpy()
        except KeyError as err:
            raise KeyError(f"image(s) not in cache {self.npy}: {err}; the cache is older than the "
                           "manifest, rebuild it") from None

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Images at ``rows`` (read in sorted order for locality, returned in the given order), in
        chunks of READ_CHUNK rows: a large read (a whole test set) needs no second full-size copy."""
        rows = np.asarray(rows)
        order = np.argsort(rows, kind="stable")
        out = np.empty((len(rows), *self.array.shape[1:]), dtype=np.uint8)
        for i in range(0, len(rows), READ_CHUNK):
            part = order[i:i + READ_CHUNK]
            out[part] = self.array[rows[part]]
        return out
