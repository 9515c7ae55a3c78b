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
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from . import models as dxmodels
from .data.cache import ImageCache
from .data.download import sha256_file
from .environment import versions
from .io import atomic_path, write_csv, write_json
from .runtime import Batches, Runner, inference_batch_size, input_stats, pick_device
from .scores import balanced_accuracy
from .sets import select
from .settings import without_speed_keys

CHECKPOINT = "checkpoint.pt"
LOG_COLUMNS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy",
               "val_balanced_accuracy", "seconds", "images_per_s"]


@dataclass(frozen=True)
class Distributed:
    """This process's place in a `torchrun` job (world size 1 when started without it)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
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


@torch.no_grad()
def recalibrate_batchnorm(runner: Runner, batches: Batches, max_images: int) -> None:
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


class Split:
    """The train and validation images of one train set: manifest rows, cache rows and labels."""

    def __init__(self, cache: ImageCache, train_rows: pd.DataFrame, val_rows: pd.DataFrame):
        self.cache, self.train_rows, self.val_rows = cache, train_rows, val_rows
        self.train_cache_rows = cache.rows_for(train_rows["image_id"])
        self.val_cache_rows = cache.rows_for(val_rows["image_id"])
        self.train_labels = train_rows["label"].to_numpy()
        self.val_labels = val_rows["label"].to_numpy()


def _split(cache: ImageCache, manifest: pd.DataFrame, train_set: str, settings: dict,
           rows: dict | None = None) -> Split:
    """The train set's train and val images (``rows``: a protocol's part and generators); a train
    split of one class is refused (and a val split of one class warned about) before any model is built."""
    seed = int(settings["seed"])
    train_rows = select(manifest, train_set, "train", rows)
    val_rows = select(manifest, train_set, "val", rows)
    if settings.get("max_train_images"):
        train_rows = train_rows.sample(n=min(len(train_rows), settings["max_train_images"]),
                                       random_state=seed).reset_index(drop=True)
    split = Split(cache, train_rows, val_rows)
    for name, labels in (("train", split.train_labels), ("val", split.val_labels)):
        if len(labels) and len(set(labels.tolist())) < 2:  # empty sets are refused below, with their own message
            what = (f"{train_set}: the {name} images are all {'fake' if labels[0] == 1 else 'real'} "
                    f"({len(labels)} images)")
            if name == "train":
                raise ValueError(f"{what}: a detector cannot learn from one class; check the dataset's folders "
                                 "(data.ignore?), the split fractions, or max_train_images")
            # a tiny validation set can draw one class: the best epoch is then chosen on its recall alone
            print(f"warning: {what}: the best epoch is chosen on that class alone; a larger val_fraction "
                  "gives both classes", file=sys.stderr, flush=True)
    return split


def _device(device: str | None, dist: Distributed) -> torch.device:
    """The training device; under torchrun also this rank's GPU and the process group (gloo on the CPU)."""
    dev = pick_device(device)
    if dist.enabled:
        import torch.distributed as tdist

        if dev.type == "cuda":
            # each rank sees all GPUs (cuda:local_rank) or, with GPU slots, only its own (cuda:0)
            dev = torch.device("cuda", dist.local_rank if torch.cuda.device_count() > 1 else 0)
            torch.cuda.set_device(dev)
        if not tdist.is_initialized():
            tdist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


@dataclass
class Progress:
    """Where a run stands: the epoch to start from, the log so far and the best epoch's weights."""

    start_epoch: int = 1
    log: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"score": -1.0, "epoch": 0, "state": None})
    resumed_from: int | None = None
    feature_seconds: float | None = None  # freeze_backbone: the one pass computing the features


def _resume(ckpt_path: Path, ident: str, runner: Runner, optimizer: torch.optim.Optimizer) -> Progress:
    """The checkpoint's progress when it was written by the same run (``ident``), else a fresh start."""
    if not ckpt_path.exists():
        return Progress()
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    if ckpt.get("ident") != ident:
        print(f"ignoring {ckpt_path}: written for other settings, images, dataset files, process count, "
              "device or precision", flush=True)
        return Progress()
    runner.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    start = int(ckpt["epoch"]) + 1
    print(f"resuming from {ckpt_path} after epoch {start - 1}", flush=True)
    return Progress(start, [dict(zip(LOG_COLUMNS, row)) for row in ckpt["log"].tolist()],
                    {"score": float(ckpt["best_score"]), "epoch": int(ckpt["best_epoch"]),
                     "state": ckpt["best_state"]}, start - 1)


def _save_checkpoint(path: Path, ident: str, epoch: int, runner: Runner, optimizer, state: Progress) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({
            "ident": ident, "epoch": epoch, "model": runner.model.state_dict(),
            "optimizer": optimizer.state_dict(), "best_score": state.best["score"],
            "best_epoch": state.best["epoch"], "best_state": state.best["state"],
            "log": torch.tensor([[float(r[c]) for c in LOG_COLUMNS] for r in state.log], dtype=torch.float64),
        }, tmp)


@dataclass
class Job:
    """One training run's fixed parts, shared by its epochs."""

    runner: Runner
    optimizer: torch.optim.Optimizer
    forward: object
    settings: dict
    split: Split
    dist: Distributed
    cached_side: int
    steps_per_epoch: int
    total_steps: int
    name: str
    train_set: str
    progress: bool
    init_sha256: str | None = None  # the pretrained file's: a changed file must not resume old weights


def _augmentation(job: Job, b: int, gen: torch.Generator) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Random crop offsets and horizontal flips of one batch, on the device (None: not used)."""
    settings, size, side, dev = job.settings, job.runner.image_size, job.cached_side, job.runner.device
    offsets = flips = None
    if settings.get("random_crop", True) and side > size:
        offsets = torch.randint(0, side - size + 1, (b, 2), generator=gen)
    if settings.get("hflip", True):
        flips = torch.rand(b, generator=gen) < 0.5
    if offsets is None and flips is not None:
        c = (side - size) // 2
        offsets = torch.full((b, 2), c)
    if offsets is not None:
        offsets = offsets.to(dev)
    if flips is not None:
        flips = flips.to(dev)
    return offsets, flips


def _train_epoch(job: Job, epoch: int, batches: Batches, gen: torch.Generator) -> dict:
    """One pass over the epoch's batches; the loss, accuracy, images and learning rate it ended with."""
    from .progress import progress_bar

    runner, settings, epochs = job.runner, job.settings, int(job.settings["epochs"])
    runner.model.train()
    loss_sum, correct, seen, lr = 0.0, 0, 0, None
    bar = progress_bar(batches, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not job.progress, mininterval=2.0)
    for step_in_epoch, (x, y) in enumerate(bar):
        step = (epoch - 1) * job.steps_per_epoch + step_in_epoch
        lr = lr_at(step, job.total_steps, settings, job.steps_per_epoch)
        for g in job.optimizer.param_groups:
            g["lr"] = lr
        b = len(y)
        offsets, flips = _augmentation(job, b, gen)
        inp = runner.inputs(x, offsets, flips)
        y = y.to(runner.device, non_blocking=True)
        logits = runner.logits(inp, job.forward)
        loss = F.cross_entropy(logits, y, label_smoothing=float(settings.get("label_smoothing", 0.0)))
        loss_value = loss.item()
        if not math.isfinite(loss_value):  # stop before the step writes NaN into the weights
            raise FloatingPointError(
                f"{job.name} on {job.train_set}: the training loss is {loss_value} at epoch "
                f"{epoch}, step {step_in_epoch + 1} (lr {lr:.3g}); the model diverged: lower the learning "
                "rate, or set amp: false")
        # On the CPU, freeing gradients each step makes the allocator return and re-fault them
        # (costly for vgg19's 140M parameters); on CUDA set_to_none is the faster choice.
        job.optimizer.zero_grad(set_to_none=runner.cuda)
        loss.backward()
        job.optimizer.step()
        loss_sum += loss_value * b
        correct += (logits.argmax(1) == y).sum().item()
        seen += b
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
    return {"loss_sum": loss_sum, "correct": correct, "seen": seen, "lr": lr}


def _epoch(job: Job, epoch: int, state: Progress, val_batches: Batches, seen_ids: list[str]) -> None:
    """Train one epoch, re-estimate BatchNorm, validate; log it and keep the weights if it is the best."""
    split, settings, dist, cache = job.split, job.settings, job.dist, job.split.cache
    seed, bs = int(settings["seed"]), int(settings["batch_size"])
    epoch_seed = seed * 100_003 + epoch
    torch.manual_seed(epoch_seed)
    gen = torch.Generator(device="cpu").manual_seed(epoch_seed + 7919 * dist.rank)
    n = len(split.train_cache_rows)
    mine = shard(n, epoch_seed, dist) if dist.enabled else np.arange(n)
    if dist.enabled:
        seen_ids += split.train_rows["image_id"].to_numpy()[mine].astype(str).tolist()
    batches = Batches(cache, split.train_cache_rows[mine], split.train_labels[mine], bs, shuffle_seed=epoch_seed,
                      jpeg_augment=float(settings.get("jpeg_augment", 0.0)),
                      prefetch=int(settings.get("loader_workers", 2)), pin=job.runner.cuda, drop_last=True)
    t0 = time.time()
    done = _train_epoch(job, epoch, batches, gen)
    if job.runner.cuda:
        torch.cuda.synchronize()
    train_seconds = time.time() - t0
    recalibrate_batchnorm(job.runner, Batches(cache, split.train_cache_rows, split.train_labels, bs,
                                              shuffle_seed=epoch_seed + 1, prefetch=0, drop_last=True),
                          int(settings.get("bn_recalibration", 64)))
    probs, val_loss = job.runner.predict(val_batches)
    _log_epoch(job, state, epoch, probs, val_loss, done, t0, train_seconds)


def _log_epoch(job: Job, state: Progress, epoch: int, probs: np.ndarray, val_loss: float, done: dict, t0: float,
               train_seconds: float) -> None:
    """Log one epoch's row (printed and kept) and keep the weights if its validation is the best so far."""
    split = job.split
    pred = (probs >= 0.5).astype(int)
    val_bal = balanced_accuracy(split.val_labels, pred)
    seen = done["seen"]
    row = {"epoch": epoch, "lr": done["lr"], "train_loss": done["loss_sum"] / seen,
           "train_accuracy": done["correct"] / seen, "val_loss": val_loss,
           "val_accuracy": float(np.mean(pred == split.val_labels)), "val_balanced_accuracy": val_bal,
           "seconds": time.time() - t0, "images_per_s": seen / max(train_seconds, 1e-9)}
    state.log.append(row)
    print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if val_bal > state.best["score"] and np.isfinite(probs).all():  # NaN predictions all say "real"
        state.best = {"score": val_bal, "epoch": epoch,
                      "state": {k: v.detach().cpu().clone() for k, v in job.runner.model.state_dict().items()}}


def initial_model(settings: dict, init_weights: str | Path | None, name: str) -> torch.nn.Module:
    """The model training starts from: timm's random initialization (seeded by the caller), or, with
    ``pretrained: true``, the backbone read from ``init_weights`` (the pretrained stage's file: a
    training job never downloads anything) and a fresh two-class head."""
    if settings.get("pretrained") and not init_weights:
        raise ValueError(f"{name}: the settings say pretrained: true but no --init-weights file was given: the "
                         f"pretrained stage writes it (snakemake resources/pretrained/{name}.safetensors)")
    if init_weights and not settings.get("pretrained"):
        raise ValueError(f"{name}: --init-weights {init_weights} given but the settings say pretrained: false")
    if settings.get("freeze_backbone") and not settings.get("pretrained"):
        raise ValueError(f"{name}: freeze_backbone trains a head on the backbone's features, random ones with "
                         "pretrained: false; set pretrained: true")
    model = dxmodels.model_of(settings)
    if init_weights:  # read once: load_backbone says which of the model's tensors the file lacked
        missing = dxmodels.load_backbone(model, init_weights)["missing"]
        if settings.get("freeze_backbone") and any(not k.startswith(_classifier_prefix(model)) for k in missing):
            raise dxmodels.ModelError(f"{init_weights}: the frozen backbone of {name} lacks {sorted(missing)[:3]}, "
                                      "which would stay random: weights of another architecture or input size?")
    return model


def _classifier_prefix(model: torch.nn.Module) -> str:
    clf = model.get_classifier()
    return next(name for name, m in model.named_modules() if m is clf) + "."


@torch.no_grad()
def backbone_features(runner: Runner, cache: ImageCache, rows: np.ndarray, settings: dict) -> torch.Tensor:
    """The frozen backbone's pooled features (what the head reads) of each image, once, center-cropped."""
    model = runner.model.eval()
    feats = []
    batches = Batches(cache, rows, np.zeros(len(rows), dtype=np.int64), inference_batch_size(settings),
                      prefetch=int(settings.get("loader_workers", 2)), pin=runner.cuda)
    for x, _ in batches:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=runner.amp):
            f = model.forward_head(model.forward_features(runner.inputs(x)), pre_logits=True)
        feats.append(f.float())
    return torch.cat(feats)


def _train_head(job: Job, state: Progress) -> None:
    """freeze_backbone: every epoch trains the classifier head alone on features computed once per
    image (the UnivFD recipe); the same log rows, best-epoch choice and outputs as full training."""
    runner, settings, split = job.runner, job.settings, job.split
    head = runner.model.get_classifier()
    t0 = time.time()
    train_x = backbone_features(runner, split.cache, split.train_cache_rows, settings)
    val_x = backbone_features(runner, split.cache, split.val_cache_rows, settings)
    state.feature_seconds = time.time() - t0
    print(f"features of {len(train_x)} train and {len(val_x)} val images: {state.feature_seconds:.1f} s", flush=True)
    train_y = torch.from_numpy(split.train_labels.astype(np.int64)).to(runner.device)
    val_y = torch.from_numpy(split.val_labels.astype(np.int64)).to(runner.device)
    bs, epochs = int(settings["batch_size"]), int(settings["epochs"])
    for epoch in range(1, epochs + 1):
        t1 = time.time()
        gen = torch.Generator().manual_seed(int(settings["seed"]) * 100_003 + epoch)
        order = torch.randperm(len(train_x), generator=gen).to(runner.device)
        head.train()
        loss_sum, correct, seen, lr = 0.0, 0, 0, None
        for step_in_epoch in range(job.steps_per_epoch):
            idx = order[step_in_epoch * bs:(step_in_epoch + 1) * bs]
            lr = lr_at((epoch - 1) * job.steps_per_epoch + step_in_epoch, job.total_steps, settings,
                       job.steps_per_epoch)
            for g in job.optimizer.param_groups:
                g["lr"] = lr
            logits = head(train_x[idx])
            loss = F.cross_entropy(logits, train_y[idx], label_smoothing=float(settings.get("label_smoothing", 0.0)))
            job.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            job.optimizer.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == train_y[idx]).sum())
            seen += len(idx)
        head.eval()
        with torch.no_grad():
            val_logits = head(val_x)
            val_loss = float(F.cross_entropy(val_logits, val_y))
            probs = torch.softmax(val_logits, 1)[:, 1].cpu().numpy().astype(np.float64)
        _log_epoch(job, state, epoch, probs, val_loss, {"loss_sum": loss_sum, "correct": correct, "seen": seen,
                                                        "lr": lr}, t1, time.time() - t1)


def _job(*, cache: ImageCache, manifest: pd.DataFrame, train_set: str, settings: dict, dev: torch.device,
         dist: Distributed, progress: bool, name: str, rows: dict | None = None,
         init_weights: str | Path | None = None) -> Job:
    """The split, model, runner, optimizer and step counts of one training run (nothing trained yet)."""
    split = _split(cache, manifest, train_set, settings, rows)
    cached_side = cache.array.shape[1]
    size = int(settings["image_size"])
    if size > cached_side:
        raise ValueError(f"image_size={size} is larger than the cached images ({cached_side} px)")
    torch.manual_seed(int(settings["seed"]))
    model = initial_model(settings, init_weights, name)
    dxmodels.check_input_size(model, size, name)
    if settings.get("freeze_backbone"):
        if dist.enabled:
            raise ValueError(f"{name}: freeze_backbone trains a linear head in one process; set compute.gpus_per_job: 1")
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.get_classifier().parameters():
            p.requires_grad_(True)
    runner = Runner(model, dev, settings)
    optimizer = make_optimizer(runner.model, settings)
    n_train = len(split.train_cache_rows)
    if n_train < 2 * dist.world:
        raise ValueError(f"the {train_set} train split has {n_train} image(s): too few to train")
    forward = runner.forward
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ddp = DistributedDataParallel(runner.model, device_ids=[dev.index] if dev.type == "cuda" else None)
        forward = torch.compile(ddp) if settings.get("compile") and runner.cuda else ddp
    # batch_size is per process: under torchrun the global batch is batch_size x world size
    steps_per_epoch = max(1, (n_train // dist.world) // int(settings["batch_size"]))
    return Job(runner, optimizer, forward, settings, split, dist, cached_side, steps_per_epoch,
               int(settings["epochs"]) * steps_per_epoch, name, train_set, progress,
               sha256_file(init_weights) if init_weights else None)


def _identity(job: Job, manifest: pd.DataFrame) -> str:
    """What a checkpoint must match to be resumed: the same settings, images (a split change must not
    resume weights that saw today's test images; the dataset fingerprint, files and sizes, catches the
    same ids with other pixels), number of processes (it sets the schedule), device type and precision."""
    return settings_hash({**job.settings, "train_set": job.train_set, "world": job.dist.world,
                          "train_ids": job.split.train_rows["image_id"].astype(str).tolist(),
                          "val_ids": job.split.val_rows["image_id"].astype(str).tolist(),
                          "dataset": manifest.attrs.get("fingerprint", ""), "device": job.runner.device.type,
                          "bf16": job.runner.amp, "init_sha256": job.init_sha256})


def _write_outputs(job: Job, state: Progress, out_dir: Path, elapsed: float, init_weights=None) -> dict:
    """model.safetensors (the best epoch's weights), log.csv and train.json; the summary it wrote."""
    from safetensors.torch import save_file

    settings, runner, dev, best = job.settings, job.runner, job.runner.device, state.best
    with atomic_path(out_dir / "model.safetensors", suffix=".safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in best["state"].items()}, str(tmp),
                  metadata={"arch": settings["arch"], "train_set": job.train_set, "best_epoch": str(best["epoch"])})
    log_df = pd.DataFrame(state.log, columns=LOG_COLUMNS)
    log_df["epoch"] = log_df["epoch"].astype(int)
    write_csv(log_df, out_dir / "log.csv")
    n_params = dxmodels.count_parameters(runner.model)
    summary = {
        "model": job.name, "arch": settings["arch"], "train_set": job.train_set, "settings": settings,
        "parameters": n_params, "parameters_millions": round(n_params / 1e6, 2),
        "epochs": int(settings["epochs"]), "best_epoch": best["epoch"], "best_val_balanced_accuracy": best["score"],
        "n_train": int(len(job.split.train_cache_rows)), "n_val": int(len(job.split.val_cache_rows)),
        # the fake generators seen in training: a test generator outside this list was held out
        "trained_generators": sorted(set(job.split.train_rows.loc[job.split.train_rows["label"] == 1, "generator"])),
        "seconds": elapsed, "resumed_after_epoch": state.resumed_from,
        "images_per_s": float(np.mean([r["images_per_s"] for r in state.log])),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "versions": versions(),
        "amp_bf16": runner.amp, "channels_last": runner.channels_last, "world_size": job.dist.world,
        # where the weights started: the pretrained file (and its SHA-256), or timm's seeded random init
        "init": ({"file": str(init_weights), "sha256": sha256_file(init_weights)} if init_weights
                 else {"random_seed": int(settings["seed"])}),
        "frozen_backbone_feature_seconds": state.feature_seconds,
        "input_mean_std": [list(v) for v in input_stats(settings)],
    }
    write_json(out_dir / "train.json", summary)
    return summary


def _ddp_record(job: Job, state: Progress, out_dir: Path, seen_ids: list[str]) -> bool:
    """Which images this rank trained on and the weights it ended with (the record that the ranks split
    the data and agree on the result); True on the main rank, which goes on to write the outputs."""
    import torch.distributed as tdist

    dist = job.dist
    write_json(out_dir / "ddp" / f"rank{dist.rank}.json", {
        "rank": dist.rank, "world": dist.world, "image_ids": seen_ids,
        "best_state_sha256": state_digest(state.best["state"]), "best_epoch": state.best["epoch"]})
    tdist.barrier()
    if not dist.main:
        tdist.destroy_process_group()
    return dist.main


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
    train_rows: dict | None = None,
    init_weights: str | Path | None = None,
) -> dict:
    """Train one model on one train set; write ``model.safetensors``, ``log.csv``, ``train.json``.

    ``model_name``: the config's name for the model (default: its timm architecture); two config
    models may share an architecture, so reports key training runs by this name. ``train_rows``: a
    protocol train set's part and generators (:func:`deepfake_xai.sets.select`). ``init_weights``:
    the pretrained backbone (the pretrained stage's safetensors) when the settings say ``pretrained``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = Distributed.from_env()
    dev = _device(device, dist)  # one process per GPU under torchrun (compute.gpus_per_job)
    progress = progress and dist.main
    if dev.type == "cpu":
        torch.set_num_threads(max(1, threads))
    job = _job(cache=cache, manifest=manifest, train_set=train_set, settings=settings, dev=dev, dist=dist,
               progress=progress, name=model_name or settings["arch"], rows=train_rows, init_weights=init_weights)
    ckpt_path = out_dir / CHECKPOINT
    ident = _identity(job, manifest)
    state = _resume(ckpt_path, ident, job.runner, job.optimizer)
    val_batches = Batches(cache, job.split.val_cache_rows, job.split.val_labels, inference_batch_size(settings),
                          prefetch=int(settings.get("loader_workers", 2)), pin=job.runner.cuda)
    seen_ids: list[str] = []
    t_start = time.time()
    epochs = int(settings["epochs"])
    if settings.get("freeze_backbone"):  # seconds of work: no checkpoints, nothing to resume
        _train_head(job, state)
        epochs = 0
    for epoch in range(state.start_epoch, epochs + 1):
        _epoch(job, epoch, state, val_batches, seen_ids)
        if epoch < epochs and dist.main:  # after the last epoch the final files are written at once
            _save_checkpoint(ckpt_path, ident, epoch, job.runner, job.optimizer, state)
    elapsed = time.time() - t_start
    if dist.enabled and not _ddp_record(job, state, out_dir, seen_ids):
        return {"rank": dist.rank, "world": dist.world, "best_epoch": state.best["epoch"]}
    summary = _write_outputs(job, state, out_dir, elapsed, init_weights)
    ckpt_path.unlink(missing_ok=True)
    if dist.enabled:
        import torch.distributed as tdist

        tdist.destroy_process_group()
    return summary
