"""The bulk path: many test images of one (model, train set, test set) cell, every method, batched
on the device. Maps stay tensors until the end and are written once, as float16, with their ids."""

from __future__ import annotations

import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .base import Context, NotApplicable
from .registry import get_method


def select_sample(preds, n_images: int, n_shared: int, seed: int, threshold: float = 0.5) -> list[str]:
    """Image ids to explain: first ``n_shared`` images chosen without looking at the model
    (balanced real/fake; the same for every model, for montages across models), then the rest
    balanced over label x (correct, wrong), so mistakes are explained too."""
    rng = np.random.default_rng(seed)
    ids = np.asarray(preds["image_id"])
    labels = np.asarray(preds["label"]).astype(int)
    order = np.argsort(ids, kind="stable")  # independent of the file's row order
    ids, labels = ids[order], labels[order]
    correct = (np.asarray(preds["prob"])[order] >= threshold).astype(int) == labels
    chosen: list[str] = []
    shared_rng = np.random.default_rng(seed)
    for label in (1, 0):
        pool = ids[labels == label]
        chosen += list(shared_rng.permutation(pool)[: (n_shared + 1 - label) // 2])
    strata = [(lab, ok) for lab in (1, 0) for ok in (False, True)]
    remaining = n_images - len(chosen)
    pools = {s: [i for i in rng.permutation(ids[(labels == s[0]) & (correct == s[1])]) if i not in chosen]
             for s in strata}
    while remaining > 0 and any(pools.values()):
        for s in strata:
            if remaining and pools[s]:
                chosen.append(pools[s].pop(0))
                remaining -= 1
    return [str(i) for i in chosen[:n_images]]


def _fake_probability(logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(logits.float(), 1)[:, 1]


def _target_classes(targets: str, threshold: float, logits: torch.Tensor) -> torch.Tensor:
    """The class each image is explained for: the predicted one (fake when P(fake) >= ``threshold``,
    the metrics' decision threshold), or always "fake" or "real"."""
    if targets == "predicted":
        return (_fake_probability(logits) >= threshold).long()
    return torch.full((len(logits),), 1 if targets == "fake" else 0, dtype=torch.long, device=logits.device)


def explain_cell(*, model: torch.nn.Module, target_layer: torch.nn.Module, images: torch.Tensor,
                 methods: list[str], targets: str | torch.Tensor = "predicted", batch_size: int = 16,
                 amp: bool = False, progress: bool = True, threshold: float = 0.5) -> dict:
    """Maps of every method for normalized ``images`` (N, 3, H, W) on the model's device.

    ``targets``: "predicted", "fake" or "real", or one class per image (e.g. another model's targets,
    so that two models' maps explain the same class). One forward pass per batch gives the
    prediction, the target class and what the methods share (with ``amp``, that pass and so the
    recorded probabilities are bf16).

    Returns {"maps": {method: float16 array (N, H, W)}, "not_applicable": {method: reason},
    "probs": (N,), "targets": (N,), "seconds": {method: s}}.
    """
    from ..progress import progress_bar

    chosen = [get_method(m) for m in methods]
    need_grad = any(m.needs_gradients for m in chosen)
    need_input_grad = any(m.needs_input_grad for m in chosen)
    out: dict[str, list[torch.Tensor]] = {m.name: [] for m in chosen}
    not_applicable: dict[str, str] = {}
    seconds = {m.name: 0.0 for m in chosen}
    probs, tgts = [], []
    guided_model = None
    given = None if isinstance(targets, str) else torch.as_tensor(targets).to(images.device)
    for start in progress_bar(range(0, len(images), batch_size), desc="explain", unit="batch", disable=not progress):
        x = images[start : start + batch_size]
        # a named target comes from the capture's own forward pass (no separate prediction pass)
        chosen_targets = (partial(_target_classes, targets, threshold) if given is None
                          else given[start : start + batch_size])
        ctx = Context.capture(model, x, chosen_targets, target_layer, need_gradients=need_grad,
                              need_input_grad=need_input_grad, amp=amp)
        p, t = _fake_probability(ctx.logits), ctx.targets
        if guided_model is not None:
            ctx.cache["guided_model"] = guided_model
        for m in chosen:
            if m.name in not_applicable:
                continue
            t0 = time.perf_counter()
            try:
                with torch.no_grad():  # methods that need a graph enable it themselves
                    out[m.name].append(m.from_context(ctx).to(torch.float16))
            except NotApplicable as err:
                not_applicable[m.name] = str(err)
            seconds[m.name] += time.perf_counter() - t0
        guided_model = ctx.cache.get("guided_model") or guided_model
        probs.append(p.detach())
        tgts.append(t)
    maps = {k: torch.cat(v).cpu().numpy() for k, v in out.items() if v and k not in not_applicable}
    return {"maps": maps, "not_applicable": not_applicable, "probs": torch.cat(probs).cpu().numpy(),
            "targets": torch.cat(tgts).cpu().numpy(), "seconds": seconds}


def write_maps(path: str | Path, *, image_ids, labels, crops: np.ndarray, result: dict, meta: dict) -> None:
    """One file per cell: ids, labels, probabilities, targets, the displayed crops (uint8) and each
    method's float16 maps; methods that do not apply are listed with their reason."""
    from ..io import atomic_path

    arrays = {f"map_{k}": v for k, v in result["maps"].items()}
    info = {**meta, "methods": sorted(result["maps"]), "not_applicable": result["not_applicable"],
            "seconds": result["seconds"]}
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, image_ids=np.asarray(image_ids, dtype=str), labels=np.asarray(labels),
                                probs=result["probs"], targets=result["targets"], crops=crops,
                                info=np.asarray(json.dumps(info)), **arrays)


def read_maps(path: str | Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out["info"] = json.loads(str(out["info"]))
    out["maps"] = {k[4:]: out.pop(k) for k in list(out) if k.startswith("map_")}
    return out

