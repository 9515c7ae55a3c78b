"""Training one (model, train set) job: from the image cache to weights, a log and ``train.json``.

- Batches come from the memory-mapped uint8 cache through a background reader thread; crops, flips
  and normalization run on the device.
- bf16 autocast and channels_last on CUDA, fp32 on CPU.
- Model selection by validation balanced accuracy (the test split is never read here).
- A checkpoint after every epoch; a killed job started again resumes after its last finished epoch
  and, because every epoch's randomness is derived from (seed, epoch), ends with the same weights
  as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import math
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from PIL import Image

from . import models as dxmodels
from .config import without_speed_keys
from .data.cache import ImageCache
from .evaluate import inference_batch_size
from .io import atomic_path, write_csv, write_json
from .sets import select

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHECKPOINT = "checkpoint.pt"
LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
               "val_balanced_accuracy", "seconds", "images_per_s"]


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


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job (world size 1 when started without it)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> "Distributed":
        return cls(int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
                   int(os.environ.get("WORLD_SIZE", 1)))

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def state_digest(state: dict) -> str:
    """SHA-256 of a state dict's names and bytes: equal digests, equal weights."""
    h = hashlib.sha256()
    for k in sorted(state):
        t = state[k].detach().cpu().contiguous()
        h.update(k.encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def shard(n: int, seed: int, dist: Distributed) -> np.ndarray:
    """This rank's indices of an epoch: one shared permutation, every world-th item from the rank's
    offset, cut to the same length on every rank (DistributedSampler without padding)."""
    order = np.random.default_rng(seed).permutation(n)
    per_rank = n // dist.world
    return np.sort(order[dist.rank::dist.world][:per_rank])


def settings_hash(settings: dict) -> str:
    """Identity of a training run's settings; a checkpoint from other settings is not resumed."""
    return hashlib.sha256(json.dumps(without_speed_keys(settings), sort_keys=True).encode()).hexdigest()[:16]


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


def jpeg_recompress(img: np.ndarray, quality: int) -> np.ndarray:
    buf = _io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


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
                imgs[i] = jpeg_recompress(imgs[i], rng.integers(60, 96))
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


def lr_at(step: int, total: int, settings: dict, steps_per_epoch: int) -> float:
    base = settings["lr"]
    warm = int(settings.get("warmup_epochs", 0) * steps_per_epoch)
    if step < warm:
        return base * (step + 1) / warm
    if settings["schedule"] == "constant":
        return base
    if settings["schedule"] == "step":
        return base * (0.1 ** int(3 * (step - warm) / max(1, total - warm)))
    progress = (step - warm) / max(1, total - warm)
    return base * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: torch.nn.Module, settings: dict) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": settings["weight_decay"]},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernels update every parameter in one pass: on a CPU, AdamW over vgg19's 140M
    # parameters takes 0.2 s instead of 1.0 s per step.
    device = next(model.parameters()).device.type
    fused = device in ("cpu", "cuda")
    if settings["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=settings["lr"], momentum=settings["momentum"], nesterov=True,
                               fused=fused)
    return torch.optim.AdamW(groups, lr=settings["lr"], fused=fused)


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
        self.normalize = Normalizer().to(device)
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


@torch.no_grad()
def recalibrate_batchnorm(runner: "Runner", batches: Batches, max_images: int) -> None:
    """Re-estimate BatchNorm running statistics as exact averages over training images.

    With few optimizer steps (small data, early epochs) the exponential running averages lag far
    behind the weights, and evaluation-mode predictions collapse to one class; "precise BN"
    (Wu & Johnson, 2021) fixes that. Running statistics do not enter training-mode forward passes,
    so this changes evaluation only, never the training trajectory.
    """
    bns = [m for m in runner.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns or max_images <= 0:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    runner.model.train()
    seen = 0
    for x, _ in batches:
        runner.logits(runner.inputs(x))
        seen += len(x)
        if seen >= max_images:
            break
    for m, mom in zip(bns, saved):
        m.momentum = mom
    runner.model.eval()


def balanced_accuracy(labels: np.ndarray, pred: np.ndarray) -> float:
    recalls = [np.mean(pred[labels == c] == c) for c in (0, 1) if np.any(labels == c)]
    return float(np.mean(recalls))


def train(
    *,
    cache: ImageCache,
    manifest: pd.DataFrame,
    train_set: str,
    settings: dict,
    out_dir: str | Path,
    threads: int = 1,
    device: str | None = None,
    progress: bool = True,
    model_name: str | None = None,
) -> dict:
    """Train one model on one train set; write ``model.safetensors``, ``log.csv``, ``train.json``.

    ``model_name``: the config's name for the model (default: its timm architecture); two config
    models may share an architecture, so reports key training runs by this name."""
    from safetensors.torch import save_file
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = Distributed.from_env()
    dev = pick_device(device)
    if dist.enabled:
        # One process per GPU under torchrun (compute.gpus_per_job); gloo on the CPU (tests).
        import torch.distributed as tdist  # used again at the end of training

        if dev.type == "cuda":
            # each rank sees all GPUs (cuda:local_rank) or, with GPU slots, only its own (cuda:0)
            dev = torch.device("cuda", dist.local_rank if torch.cuda.device_count() > 1 else 0)
            torch.cuda.set_device(dev)
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
        progress = progress and dist.main
    if dev.type == "cpu":
        torch.set_num_threads(max(1, threads))
    seed = int(settings["seed"])
    train_rows = select(manifest, train_set, "train")
    val_rows = select(manifest, train_set, "val")
    if settings.get("max_train_images"):
        train_rows = train_rows.sample(n=min(len(train_rows), settings["max_train_images"]),
                                       random_state=seed).reset_index(drop=True)
    tr_cache_rows = cache.rows_for(train_rows["image_id"])
    va_cache_rows = cache.rows_for(val_rows["image_id"])
    tr_labels = train_rows["label"].to_numpy()
    va_labels = val_rows["label"].to_numpy()
    for split, labels in (("train", tr_labels), ("val", va_labels)):
        if len(labels) and len(set(labels.tolist())) < 2:  # empty sets are refused below, with their own message
            what = (f"{train_set}: the {split} images are all {'fake' if labels[0] == 1 else 'real'} "
                    f"({len(labels)} images)")
            if split == "train":
                raise ValueError(f"{what}: a detector cannot learn from one class; check the dataset's folders "
                                 "(data.ignore?), the split fractions, or max_train_images")
            # a tiny validation set can draw one class: the best epoch is then chosen on its recall alone
            print(f"warning: {what}: the best epoch is chosen on that class alone; a larger val_fraction "
                  "gives both classes", file=sys.stderr, flush=True)
    cached_side = cache.array.shape[1]
    size = int(settings["image_size"])
    if size > cached_side:
        raise ValueError(f"image_size={size} is larger than the cached images ({cached_side} px)")

    torch.manual_seed(seed)
    model = dxmodels.create_model(settings["arch"], pretrained=settings.get("pretrained", False),
                                  pretrained_file=settings.get("pretrained_file"))
    n_params = dxmodels.count_parameters(model)
    runner = Runner(model, dev, settings)
    optimizer = make_optimizer(runner.model, settings)
    epochs, bs = int(settings["epochs"]), int(settings["batch_size"])
    if len(tr_cache_rows) < 2 * dist.world:
        raise ValueError(f"the {train_set} train split has {len(tr_cache_rows)} image(s): too few to train")
    train_forward = runner.forward
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(runner.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        train_forward = torch.compile(ddp) if settings.get("compile") and runner.cuda else ddp
    # batch_size is per process: under torchrun the global batch is batch_size x world size
    steps_per_epoch = max(1, (len(tr_cache_rows) // dist.world) // bs)
    total_steps = epochs * steps_per_epoch
    # a checkpoint resumes only the same run: the same settings, images (a split change must not resume
    # weights that saw today's test images; the dataset fingerprint, files and sizes, catches the same
    # ids with other pixels), number of processes (it sets the schedule) and device type and precision
    ident = settings_hash({**settings, "train_set": train_set, "world": dist.world,
                           "train_ids": train_rows["image_id"].astype(str).tolist(),
                           "val_ids": val_rows["image_id"].astype(str).tolist(),
                           "dataset": manifest.attrs.get("fingerprint", ""), "device": dev.type,
                           "bf16": runner.amp})

    ckpt_path = out_dir / CHECKPOINT
    start_epoch, log, best = 1, [], {"score": -1.0, "epoch": 0, "state": None}
    resumed_from = None
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt.get("ident") == ident:
            runner.model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            start_epoch = int(ckpt["epoch"]) + 1
            log = [dict(zip(LOG_COLUMNS, row)) for row in ckpt["log"].tolist()]
            best = {"score": float(ckpt["best_score"]), "epoch": int(ckpt["best_epoch"]),
                    "state": ckpt["best_state"]}
            resumed_from = start_epoch - 1
            print(f"resuming from {ckpt_path} after epoch {resumed_from}", flush=True)
        else:
            print(f"ignoring {ckpt_path}: written for other settings, images, dataset files, process count, "
                  "device or precision", flush=True)

    val_batches = Batches(cache, va_cache_rows, va_labels, inference_batch_size(settings),
                          prefetch=int(settings.get("loader_workers", 2)), pin=runner.cuda)
    seen_ids: list[str] = []
    t_start = time.time()
    for epoch in range(start_epoch, epochs + 1):
        epoch_seed = seed * 100_003 + epoch
        torch.manual_seed(epoch_seed)
        gen = torch.Generator(device="cpu").manual_seed(epoch_seed + 7919 * dist.rank)
        mine = shard(len(tr_cache_rows), epoch_seed, dist) if dist.enabled else np.arange(len(tr_cache_rows))
        if dist.enabled:
            seen_ids += train_rows["image_id"].to_numpy()[mine].astype(str).tolist()
        batches = Batches(cache, tr_cache_rows[mine], tr_labels[mine], bs, shuffle_seed=epoch_seed,
                          jpeg_augment=float(settings.get("jpeg_augment", 0.0)),
                          prefetch=int(settings.get("loader_workers", 2)), pin=runner.cuda, drop_last=True)
        runner.model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        t0 = time.time()
        bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress,
                   mininterval=2.0)
        for step_in_epoch, (x, y) in enumerate(bar):
            step = (epoch - 1) * steps_per_epoch + step_in_epoch
            lr = lr_at(step, total_steps, settings, steps_per_epoch)
            for g in optimizer.param_groups:
                g["lr"] = lr
            b = len(y)
            offsets = flips = None
            if settings.get("random_crop", True) and cached_side > size:
                offsets = torch.randint(0, cached_side - size + 1, (b, 2), generator=gen)
            if settings.get("hflip", True):
                flips = torch.rand(b, generator=gen) < 0.5
            if offsets is None and flips is not None:
                c = (cached_side - size) // 2
                offsets = torch.full((b, 2), c)
            if offsets is not None:
                offsets = offsets.to(dev)
            if flips is not None:
                flips = flips.to(dev)
            inp = runner.inputs(x, offsets, flips)
            y = y.to(dev, non_blocking=True)
            logits = runner.logits(inp, train_forward)
            loss = F.cross_entropy(logits, y, label_smoothing=float(settings.get("label_smoothing", 0.0)))
            loss_value = loss.item()
            if not math.isfinite(loss_value):  # stop before the step writes NaN into the weights
                raise FloatingPointError(
                    f"{model_name or settings['arch']} on {train_set}: the training loss is {loss_value} at epoch "
                    f"{epoch}, step {step_in_epoch + 1} (lr {lr:.3g}); the model diverged: lower the learning "
                    "rate, or set amp: false")
            # On the CPU, freeing gradients each step makes the allocator return and re-fault them
            # (costly for vgg19's 140M parameters); on CUDA set_to_none is the faster choice.
            optimizer.zero_grad(set_to_none=runner.cuda)
            loss.backward()
            optimizer.step()
            loss_sum += loss_value * b
            correct += (logits.argmax(1) == y).sum().item()
            seen += b
            bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
        if runner.cuda:
            torch.cuda.synchronize()
        train_seconds = time.time() - t0
        recalibrate_batchnorm(runner, Batches(cache, tr_cache_rows, tr_labels, bs, shuffle_seed=epoch_seed + 1,
                                              prefetch=0, drop_last=True),
                              int(settings.get("bn_recalibration", 64)))
        probs, val_loss = runner.predict(val_batches)
        pred = (probs >= 0.5).astype(int)
        val_bal = balanced_accuracy(va_labels, pred)
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / seen, "train_accuracy": correct / seen,
               "val_loss": val_loss, "val_accuracy": float(np.mean(pred == va_labels)),
               "val_balanced_accuracy": val_bal, "seconds": time.time() - t0,
               "images_per_s": seen / max(train_seconds, 1e-9)}
        log.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
              flush=True)
        if val_bal > best["score"] and np.isfinite(probs).all():  # NaN predictions all say "real"
            best = {"score": val_bal, "epoch": epoch,
                    "state": {k: v.detach().cpu().clone() for k, v in runner.model.state_dict().items()}}
        if epoch < epochs and dist.main:  # after the last epoch the final files are written at once
            with atomic_path(ckpt_path, suffix=".pt") as tmp:
                torch.save({
                    "ident": ident, "epoch": epoch, "model": runner.model.state_dict(),
                    "optimizer": optimizer.state_dict(), "best_score": best["score"],
                    "best_epoch": best["epoch"], "best_state": best["state"],
                    "log": torch.tensor([[float(r[c]) for c in LOG_COLUMNS] for r in log], dtype=torch.float64),
                }, tmp)

    elapsed = time.time() - t_start
    if dist.enabled:
        # Which images this rank trained on and the weights it ended with: the record that the ranks
        # split the data and agree on the result.
        write_json(out_dir / "ddp" / f"rank{dist.rank}.json", {
            "rank": dist.rank, "world": dist.world, "image_ids": seen_ids,
            "best_state_sha256": state_digest(best["state"]), "best_epoch": best["epoch"]})
        tdist.barrier()
        if not dist.main:
            tdist.destroy_process_group()
            return {"rank": dist.rank, "world": dist.world, "best_epoch": best["epoch"]}
    with atomic_path(out_dir / "model.safetensors", suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in best["state"].items()}, str(tmp),
                  metadata={"arch": settings["arch"], "train_set": train_set, "best_epoch": str(best["epoch"])})
    log_df = pd.DataFrame(log, columns=LOG_COLUMNS)
    log_df["epoch"] = log_df["epoch"].astype(int)
    write_csv(log_df, out_dir / "log.csv")
    summary = {
        "model": model_name or settings["arch"], "arch": settings["arch"], "train_set": train_set, "settings": settings,
        "parameters": n_params, "parameters_millions": round(n_params / 1e6, 2),
        "epochs": epochs, "best_epoch": best["epoch"], "best_val_balanced_accuracy": best["score"],
        "n_train": int(len(tr_cache_rows)), "n_val": int(len(va_cache_rows)),
        "seconds": elapsed, "resumed_after_epoch": resumed_from,
        "images_per_s": float(np.mean([r["images_per_s"] for r in log])),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "amp_bf16": runner.amp, "channels_last": runner.channels_last, "world_size": dist.world,
    }
    write_json(out_dir / "train.json", summary)
    ckpt_path.unlink(missing_ok=True)
    if dist.enabled:
        tdist.destroy_process_group()
    return summary


def load_trained(weights: str | Path, settings: dict) -> torch.nn.Module:
    """A model of ``settings['arch']`` with the weights of a finished training job.

    The model is built on the meta device and the weights assigned, which skips the random
    initialization (seconds for vgg19's 140M parameters); a model with tensors the file does not
    hold is built normally instead.
    """
    from safetensors.torch import load_file

    state = load_file(str(weights))
    with torch.device("meta"):
        model = dxmodels.create_model(settings["arch"], pretrained=False)
    model.load_state_dict(state, assign=True)
    if any(t.is_meta for t in (*model.parameters(), *model.buffers())):
        model = dxmodels.create_model(settings["arch"], pretrained=False)
        model.load_state_dict(state)
    return model.eval()
