"""What training, prediction and explanation share: the device, batches read from the image cache,
crops and normalization on the device, the model runner, trained weights read back, and the
inference batch size. Kept apart from ``train.py`` and ``evaluate.py`` so that neither imports the other.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import models as dxmodels
from .data.cache import ImageCache
from .data.images import jpeg_roundtrip

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_stats(settings: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std inputs are normalized with: what the pretrained weights were trained with
    (timm's pretrained config of the pretrained_from tag, else of the arch: CLIP's for a CLIP ViT,
    0.5 for many ViTs), ImageNet's for a randomly initialized model."""
    if not settings.get("pretrained"):
        return IMAGENET_MEAN, IMAGENET_STD
    import timm

    from .pretrained import is_timm_name

    source = settings.get("pretrained_from")
    cfg = timm.models.get_pretrained_cfg(source if source and is_timm_name(source) else settings["arch"])
    if cfg is None or not getattr(cfg, "mean", None):
        return IMAGENET_MEAN, IMAGENET_STD
    return tuple(cfg.mean), tuple(cfg.std)


def inference_batch_size(settings: dict) -> int:
    """Batch size for predictions: four times the training batch (no gradients to keep), at least 64.
    Derived from the model's settings so that no separate knob re-runs training when changed."""
    return max(64, 4 * int(settings["batch_size"]))


def pick_device(requested: str | None = None) -> torch.device:
    """``cuda``/``cuda:N``/``cpu`` as asked; ``None`` or ``auto``: CUDA when available."""
    if requested and requested != "auto":
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 in hardware: CUDA compute capability 8.0 and later (A100,
    H100, ...) or ROCm. Older cards (V100, T4) only emulate it, slower than fp32, so the ``amp``
    setting falls back to fp32 there."""
    if device.type != "cuda":
        return False
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8

class Normalizer(torch.nn.Module):
    """uint8 NHWC batch on the device -> float NCHW normalized, optionally channels_last."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1) * 255)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float()
        return (x - self.mean) / self.std


def crop_batch(x: torch.Tensor, size: int, offsets: torch.Tensor | None = None,
               flips: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample crop (and horizontal flip) of an NHWC batch with one gather.

    ``offsets`` is (B, 2) of (top, left); ``None`` means the center crop.
    """
    b, h, w, _ = x.shape
    if size > min(h, w):  # a negative offset would wrap the slice into a smaller, wrong crop
        raise ValueError(f"a {size} px model input cannot be cropped from {h} x {w} cached images: rebuild the "
                         f"cache with center_crop >= {size}, or give the model a smaller image_size")
    if offsets is None:
        top, left = (h - size) // 2, (w - size) // 2
        if flips is None:
            return x[:, top : top + size, left : left + size]
        offsets = torch.tensor([[top, left]], device=x.device).expand(b, 2)
    ar = torch.arange(size, device=x.device)
    rows = offsets[:, 0:1] + ar  # (B, S)
    cols_fwd = ar.expand(b, size)
    if flips is not None:
        cols_fwd = torch.where(flips[:, None], size - 1 - ar, ar)
    cols = offsets[:, 1:2] + cols_fwd
    bi = torch.arange(b, device=x.device)[:, None, None]
    return x[bi, rows[:, :, None], cols[:, None, :]]

@dataclass
class Batches:
    """Epoch iterator over cache rows: reads uint8 batches in a background thread."""

    cache: ImageCache
    rows: np.ndarray
    labels: np.ndarray
    batch_size: int
    shuffle_seed: int | None = None  # None: keep order (evaluation)
    jpeg_augment: float = 0.0
    prefetch: int = 2
    pin: bool = False
    drop_last: bool = False  # training: a last batch of one image would break BatchNorm

    def __len__(self) -> int:
        return len(self._chunks(np.arange(len(self.rows))))

    def _chunks(self, order: np.ndarray) -> list[np.ndarray]:
        chunks = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        if self.drop_last and len(chunks) > 1 and len(chunks[-1]) < self.batch_size:
            chunks.pop()
        return chunks

    def _read(self, idx: np.ndarray, rng: np.random.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        imgs = self.cache.read(self.rows[idx])
        if rng is not None and self.jpeg_augment > 0:
            for i in np.flatnonzero(rng.random(len(idx)) < self.jpeg_augment):
                imgs[i] = jpeg_roundtrip(imgs[i], rng.integers(60, 96))
        x = torch.from_numpy(imgs)
        y = torch.from_numpy(self.labels[idx].astype(np.int64))
        if self.pin:
            x, y = x.pin_memory(), y.pin_memory()
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.rows)
        rng = None
        order = np.arange(n)
        if self.shuffle_seed is not None:
            rng = np.random.default_rng(self.shuffle_seed)
            order = rng.permutation(n)
        chunks = self._chunks(order)
        if self.prefetch <= 0:
            for c in chunks:
                yield self._read(c, rng)
            return
        q: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def worker():
            try:
                for c in chunks:
                    if stop.is_set():
                        return
                    q.put(self._read(c, rng))
                q.put(None)
            except BaseException as err:  # noqa: BLE001 - re-raised in the consumer
                q.put(err)

        t = threading.Thread(target=worker, daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            while t.is_alive():
                try:
                    q.get_nowait()
                except queue.Empty:
                    t.join(timeout=0.05)

class Runner:
    """Model + device plumbing shared by training and evaluation."""

    def __init__(self, model: torch.nn.Module, device: torch.device, settings: dict):
        self.device = device
        self.cuda = device.type == "cuda"
        wants_amp = bool(settings.get("amp", True)) and self.cuda
        self.amp = wants_amp and native_bf16(device)
        if wants_amp and not self.amp and os.environ.get("RANK", "0") == "0":
            print(f"amp: {torch.cuda.get_device_name(device)} has no native bf16 (compute capability below 8.0); "
                  "running in fp32", file=sys.stderr)
        self.channels_last = bool(settings.get("channels_last", True)) and self.cuda
        self.image_size = int(settings["image_size"])
        self.model = model.to(device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.normalize = Normalizer(*input_stats(settings)).to(device)
        self.forward = self.model
        if settings.get("compile") and self.cuda:
            self.forward = torch.compile(self.model)

    def inputs(self, x: torch.Tensor, offsets=None, flips=None) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        x = self.normalize(crop_batch(x, self.image_size, offsets, flips))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def logits(self, x: torch.Tensor, forward=None) -> torch.Tensor:
        """Logits in fp32 (bf16 autocast on CUDA); ``forward`` overrides the model call (DDP)."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            return (forward or self.forward)(x).float()

    @torch.no_grad()
    def predict(self, batches: Batches) -> tuple[np.ndarray, float]:
        """Probabilities of class 1 ("fake") over ``batches`` and the mean loss."""
        self.model.eval()
        probs, loss_sum, n = [], 0.0, 0
        for x, y in batches:
            logits = self.logits(self.inputs(x))
            y = y.to(self.device)
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            n += len(y)
            probs.append(torch.softmax(logits, 1)[:, 1].cpu())
        return torch.cat(probs).numpy().astype(np.float64), loss_sum / max(1, n)

def load_trained(weights: str | Path, settings: dict) -> torch.nn.Module:
    """A model of ``settings['arch']`` (and its ``model_args``) with the weights of a finished training job.

    The model is built on the meta device and the weights assigned, which skips the random
    initialization (seconds for vgg19's 140M parameters); a model with tensors the file does not
    hold is built normally instead.
    """
    from safetensors.torch import load_file

    state = load_file(str(weights))
    with torch.device("meta"):
        model = dxmodels.model_of(settings)
    model.load_state_dict(state, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = dxmodels.model_of(settings)
        model.load_state_dict(state)
    return model.eval()


def explained_model(weights: str | Path, settings: dict, device: str | None, threads: int):
    """A trained model ready to explain: its runner (eval mode, on its device, never compiled) and the
    target layer module (the settings' ``target_layer``, the registry's, else the input of the global
    pool, which is printed)."""
    runner_device = pick_device(device)
    if runner_device.type == "cpu":
        torch.set_num_threads(max(1, threads))
    runner = Runner(load_trained(weights, settings), runner_device, {**settings, "compile": False})
    dxmodels.check_input_size(runner.model, runner.image_size, settings["arch"])  # a ViT's grid, named
    layer_name = settings.get("target_layer") or dxmodels.info(settings["arch"]).target_layer
    if not layer_name:  # a timm model outside the registry: the input of its global pool
        try:
            layer_name = dxmodels.pooled_feature_layer(runner.model, int(settings.get("image_size") or 64))
        except ValueError as err:
            raise SystemExit(f"error: {settings['arch']}: {err}") from None
        print(f"{settings['arch']}: explaining layer {layer_name!r} (the input of the global pool; "
              "set models.<name>.target_layer to choose another)")
    return runner, dxmodels.get_module(runner.model, layer_name)
