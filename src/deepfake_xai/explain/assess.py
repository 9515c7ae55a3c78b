"""One explained cell assessed: faithfulness, localization and sanity of every method's maps, and
the model's robustness to re-compression and rescaling. Inputs are the explain stage's maps file
(which carries the explained crops), the trained model and the manifest's evidence boxes."""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from . import quality as Q
from .bulk import explain_cell

SANITY_THRESHOLD = 0.5  # mean rank correlation above which maps are "unchanged" by randomization


SCORE_KEYS = ("deletion_auc", "insertion_auc", "deletion_curve", "insertion_curve", "confidence_drop", "road",
              "pointing_game", "energy_in_box", "box_area_share", "face_share_real", "face_share_fake")


def _flat(maps: np.ndarray) -> bool:
    return bool(np.all(Q.flat_each(maps)))


class _Images:
    """The scored images of a cell and what every method's scores compare against."""

    def __init__(self, runner, cell: dict, boxes: list, n: int):
        self.crops = cell["crops"][:n]
        self.images = runner.inputs(torch.from_numpy(self.crops))
        self.targets = torch.as_tensor(cell["targets"][:n]).long()
        h, w = self.crops.shape[1:3]
        self.masks = np.stack([Q.box_mask(b, h, w) if b is not None else np.zeros((h, w), bool) for b in boxes[:n]])
        self.has_box = np.array([b is not None for b in boxes[:n]])
        self.labels = np.asarray(cell["labels"][:n])
        self.face = Q.ellipse_mask(h, w)


def _faithfulness_and_localization(predict, data: _Images, maps: np.ndarray, ok: np.ndarray, ends: dict, *,
                                   steps: int, keep: float, road_percentiles, batch_size: int) -> dict:
    """One method's scores on its non-flat images ``ok``: deletion/insertion, kept-pixel confidence,
    ROAD (faithfulness), pointing game, energy in the box and on the face (localization)."""
    sel = torch.from_numpy(np.flatnonzero(ok))
    maps, imgs, tgts = maps[ok], data.images[sel.to(data.images.device)], data.targets[sel]
    m_box, m_masks, m_labels, m_base = data.has_box[ok], data.masks[ok], data.labels[ok], ends["deletion"][0][ok]
    m_ends = {mode: tuple(a[ok] for a in pair) for mode, pair in ends.items()}
    tmaps = torch.from_numpy(maps)
    deletion = Q.perturbation_curve(predict, imgs, tmaps, tgts, steps, "deletion", batch_size, m_ends["deletion"])
    insertion = Q.perturbation_curve(predict, imgs, tmaps, tgts, steps, "insertion", batch_size, m_ends["insertion"])
    kept = Q.keep_top_confidence(predict, imgs, tmaps, tgts, keep)

    def face_share(label):
        sub = maps[m_labels == label]
        return Q.mean_ci(Q.energy_inside(sub, np.broadcast_to(data.face, sub.shape))) if len(sub) else None

    return {
        "deletion_auc": Q.mean_ci(Q.curve_auc(deletion)),
        "insertion_auc": Q.mean_ci(Q.curve_auc(insertion)),
        "deletion_curve": deletion.mean(axis=0).tolist(),
        "insertion_curve": insertion.mean(axis=0).tolist(),
        f"confidence_keep{round(100 * keep)}": Q.mean_ci(kept),
        "confidence_drop": Q.mean_ci(np.clip(m_base - kept, 0, None) / np.maximum(m_base, 1e-6)),
        "road": Q.mean_ci(Q.road_scores(predict, imgs, maps, tgts.tolist(), road_percentiles, batch_size))
        if road_percentiles else None,
        "pointing_game": Q.mean_ci(Q.pointing_game(maps[m_box], m_masks[m_box])) if m_box.any() else None,
        "energy_in_box": Q.mean_ci(Q.energy_inside(maps[m_box], m_masks[m_box])) if m_box.any() else None,
        "box_area_share": float(m_masks[m_box].mean()) if m_box.any() else None,
        "face_share_real": face_share(0),
        "face_share_fake": face_share(1),
    }


def _replacement_scores(out: dict, predict, runner, data: _Images, maps: dict, steps: int, replacements, seed: int,
                        batch_size: int) -> None:
    """Each scored method's deletion and insertion AUC under every replacement (its flat images left
    out, as in its other scores): ``out[method]["replacements"][key]``."""
    if not replacements or not maps:
        return
    sweep = replacement_aucs(predict, data.images, maps, data.targets, steps,
                             sweep_baselines(runner, data.crops, replacements, seed), batch_size)
    for m, curves in sweep.items():
        ok = ~Q.flat_each(maps[m])
        out[m]["replacements"] = {k: Q.mean_ci(np.asarray(v)[ok]) for k, v in curves.items()}


def _sanity(entry: dict, maps: np.ndarray, random_maps: np.ndarray | None) -> None:
    """The randomization check (Adebayo et al. 2018): maps that stay rank-correlated with those of
    the randomized model fail it. Adds the verdict and its scores to ``entry``."""
    if random_maps is None:
        entry["sanity"] = "undetermined (no maps from the randomized model)"
    elif _flat(random_maps):
        entry["sanity"] = "undetermined (flat maps)"
    else:
        # a flat map of the randomized model has no rank order to correlate: such images are
        # left out (and counted) rather than scored as "uncorrelated", which would favour passing
        both = ~Q.flat_each(random_maps)
        entry["sanity_flat_random"] = int((~both).sum())
        rho = Q.spearman(maps[both], random_maps[both])
        entry["sanity_spearman"] = Q.mean_ci(rho)
        entry["sanity_ssim"] = Q.mean_ci(Q.ssim(maps[both], random_maps[both]))
        entry["sanity"] = "fails" if float(np.mean(rho)) >= SANITY_THRESHOLD else "passes"


def _randomized_maps(runner, layer, settings: dict, seed: int, data: _Images, methods: list[str],
                     batch_size: int) -> dict:
    """The methods' maps of the same images for the same classes (the trained model's targets, as
    Adebayo et al. compare them) from a model with fresh random weights."""
    model = runner.model
    random_model = _fresh_model(settings, seed, runner.device) if settings.get("arch") else None
    if random_model is None:
        random_model = Q.randomized_copy(model, seed=seed)
    random_layer = dict(random_model.named_modules())[_layer_name(model, layer)]
    if not methods:
        return {}
    return explain_cell(model=random_model, target_layer=random_layer, images=data.images, methods=methods,
                        targets=data.targets, batch_size=batch_size, progress=False)["maps"]


def assess_cell(*, runner, layer: torch.nn.Module, cell: dict, boxes: list, settings: dict, n_images: int,
                steps: int, keep: float, road_percentiles: list[int], seed: int = 0,
                test_crops: np.ndarray | None = None, test_labels: np.ndarray | None = None,
                jpeg_qualities: list[int] = (), scales: list[float] = (), batch_size: int = 64,
                robustness_images: int | None = None, threshold: float = 0.5, replacements=()) -> dict:
    """Scores per method for the first ``n_images`` explained images of ``cell`` (a read maps file).

    ``boxes``: each explained image's evidence box in input pixels, or None (reals, unknown).
    ``test_crops``/``test_labels``: the cell's whole test set (uint8 crops) for the robustness curves,
    a seeded random subset of ``robustness_images`` of them when given.
    ``replacements``: removal curves with each of these replacements too (quality.REPLACEMENTS).
    """
    t0 = time.perf_counter()
    model = runner.model
    n = min(n_images, len(cell["image_ids"]))
    data = _Images(runner, cell, boxes, n)

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x).float(), 1)

    methods = sorted(cell["maps"])
    # A flat map (e.g. a CAM from a 1 x 1 feature map) ranks no pixel above another: deleting
    # "its" most salient pixels would only delete in raster order. It is reported, not scored.
    flat = {m: _flat(cell["maps"][m][:n]) for m in methods}
    random_maps = _randomized_maps(runner, layer, settings, seed, data, [m for m in methods if not flat[m]],
                                   batch_size)
    # What does not depend on the map is predicted once for every method: the unperturbed images
    # and both ends of the deletion and insertion curves.
    ends = {mode: Q.curve_ends(predict, data.images, data.targets, mode, batch_size)
            for mode in ("deletion", "insertion")}
    out: dict = {}
    for m in methods:
        if flat[m]:
            out[m] = {**{k: None for k in SCORE_KEYS}, f"confidence_keep{round(100 * keep)}": None,
                      "flat_maps": True, "sanity": "undetermined (flat maps)"}
            continue
        maps = cell["maps"][m][:n].astype(np.float32)
        # Flat maps of single images (a CAM that a ReLU zeroed everywhere) are left out of this
        # method's scores, and counted: they would be scored by deleting pixels in raster order.
        ok = ~Q.flat_each(maps)
        entry = _faithfulness_and_localization(predict, data, maps, ok, ends, steps=steps, keep=keep,
                                               road_percentiles=road_percentiles, batch_size=batch_size)
        entry["flat_maps"] = False
        entry["flat_images"] = int((~ok).sum())
        _sanity(entry, maps[ok], random_maps[m].astype(np.float32)[ok] if m in random_maps else None)
        out[m] = entry
    _replacement_scores(out, predict, runner, data, {m: cell["maps"][m][:n].astype(np.float32) for m in methods
                                                     if not flat[m]}, steps, replacements, seed, batch_size)

    result = {"n_images": int(n), "n_with_box": int(data.has_box.sum()), "steps": steps, "keep": keep,
              "road_percentiles": list(road_percentiles), "sanity_threshold": SANITY_THRESHOLD,
              "methods": out, "not_applicable": cell["info"].get("not_applicable", {})}
    if test_crops is not None:
        pick = robustness_subset(len(test_crops), robustness_images, seed)
        if len(pick) < len(test_crops):  # (indexing with all rows would copy the whole test set)
            test_crops, test_labels = test_crops[pick], np.asarray(test_labels)[pick]
    if test_crops is not None and len(test_crops):
        result["robustness"] = robustness(predict, runner, test_crops, np.asarray(test_labels),
                                          jpeg_qualities, scales, batch_size, threshold)
    result["seconds"] = time.perf_counter() - t0
    return result


# The scores the controlled check holds to known answers, and which direction is better; the removal
# curves with other replacements (``{replacement}_deletion_auc``, ``..._insertion_auc``) add theirs.
CONTROLLED_SCORES = {"pointing_game": +1, "energy_in_box": +1, "insertion_auc": +1, "deletion_auc": -1}
REFERENCE_MAPS = ("oracle", "random")
CURVE_MODES = ("deletion", "insertion")
COUNTERFACTUAL = "twin"  # the replacement by the controlled fake's real twin


def curve_key(replacement: str | None, mode: str) -> str:
    """``deletion_auc`` for the default curves (zeros after normalization / a blurred copy), else
    ``{replacement}_deletion_auc``."""
    return f"{mode}_auc" if replacement is None else f"{replacement}_{mode}_auc"


def score_direction(key: str) -> int:
    """+1 where higher is better, -1 where lower is (deletion AUC)."""
    return -1 if key.endswith("deletion_auc") else +1


def replacement_aucs(predict, images: torch.Tensor, maps: dict[str, np.ndarray], targets: torch.Tensor, steps: int,
                     baselines: dict[str | None, torch.Tensor | None], batch_size: int) -> dict[str, dict[str, list]]:
    """Deletion and insertion AUC per image of every map under every replacement: ``baselines`` maps a
    replacement's name (None: the default curves) to the inputs that stand in for removed pixels.
    The curves' ends do not depend on the map and are predicted once per replacement."""
    # Methods that give the same maps (Grad-CAM and HiResCAM under a global-average-pooling head) share
    # their curves: each distinct set of maps is perturbed once.
    first: dict[bytes, str] = {}
    same = {m: first.setdefault(np.ascontiguousarray(mm).tobytes(), m) for m, mm in maps.items()}
    out: dict[str, dict[str, list]] = {m: {} for m in maps}
    for name, base in baselines.items():
        ends = {mode: Q.curve_ends(predict, images, targets, mode, batch_size, base) for mode in CURVE_MODES}
        for m, mm in maps.items():
            if same[m] != m:
                continue
            tm = torch.from_numpy(mm)
            for mode in CURVE_MODES:
                out[m][curve_key(name, mode)] = Q.curve_auc(Q.perturbation_curve(
                    predict, images, tm, targets, steps, mode, batch_size, ends[mode], base)).tolist()
    return {m: dict(out[same[m]]) for m in maps}


def sweep_baselines(runner, crops: np.ndarray, replacements, seed: int = 0) -> dict[str, torch.Tensor]:
    """The inputs each replacement of ``quality.REPLACEMENTS`` puts in place of removed pixels."""
    return {r: Q.replacement_images(crops, r, runner.inputs, seed) for r in replacements}


def assess_controlled(*, runner, layer: torch.nn.Module, crops: np.ndarray, boxes: list, methods: list[str],
                      steps: int, batch_size: int = 64, seed: int = 0, twins: np.ndarray | None = None,
                      replacements=(), image_ids: list[str] | None = None, threshold: float = 0.5) -> dict:
    """Every method's maps of controlled fakes (each differs from its real twin only inside its box,
    so the box is what the model can use) scored per image for the fake class, beside the two
    reference maps every score must order correctly: ``oracle`` (the box) and ``random`` (noise).
    ``twins``: each fake's real twin (uint8 crops), the counterfactual baseline of the ``twin_*``
    deletion and insertion (pixels replaced by the twin's: no artefact of their own).
    ``replacements``: more removal curves, one pair per replacement (quality.REPLACEMENTS).
    A method whose maps are all flat is left out (listed in ``flat_methods``); an image whose map is
    flat scores NaN for that method (no pixel order to remove or point at). ``decided``: per pair,
    whether the region decides the model's verdict (the fake called fake at ``threshold``, its twin
    real): only there must the model have used the region, so only there are the answers known.
    Returns {"n": images, "image_ids": [...], "methods": {name: {score: [per-image values]}}}."""
    model = runner.model

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(model(x).float(), 1)

    images = runner.inputs(torch.from_numpy(crops))
    targets = torch.ones(len(crops), dtype=torch.long)  # the fake class, which the region decides
    h, w = crops.shape[1:3]
    masks = np.stack([Q.box_mask(b, h, w) for b in boxes])
    maps = {m: v.astype(np.float32) for m, v in explain_cell(
        model=model, target_layer=layer, images=images, methods=methods, targets=targets,
        batch_size=batch_size, progress=False)["maps"].items()}
    flat_methods = sorted(m for m, v in maps.items() if _flat(v))
    maps = {m: v for m, v in maps.items() if m not in flat_methods}
    maps["oracle"] = Q.oracle_maps(masks)
    maps["random"] = Q.random_maps(len(crops), h, w, seed)
    baselines: dict = {None: None, **sweep_baselines(runner, crops, replacements, seed)}
    if twins is not None:
        baselines[COUNTERFACTUAL] = runner.inputs(torch.from_numpy(twins))
    curves = replacement_aucs(predict, images, maps, targets, steps, baselines, batch_size)
    out = {}
    for m, mm in maps.items():
        flat = Q.flat_each(mm)
        scores = {"pointing_game": Q.pointing_game(mm, masks), "energy_in_box": Q.energy_inside(mm, masks),
                  **{k: np.asarray(v) for k, v in curves[m].items()}}
        out[m] = {k: np.where(flat, np.nan, v).tolist() for k, v in scores.items()}
    p_fake = Q.curve_ends(predict, images, targets, "deletion", batch_size)[0]
    p_twin = (Q.curve_ends(predict, images, targets, "deletion", batch_size, baselines[COUNTERFACTUAL])[1]
              if twins is not None else None)
    decided = (p_fake >= threshold) & (p_twin < threshold) if p_twin is not None else np.ones(len(crops), bool)
    return {"n": len(crops), "image_ids": [str(i) for i in (image_ids or range(len(crops)))],
            "threshold": threshold, "decided": decided.tolist(),
            "p_fake": [float(v) for v in p_fake], "p_fake_twin": None if p_twin is None else [float(v) for v in p_twin],
            "box_area_share": float(masks.mean()), "replacements": [COUNTERFACTUAL] * (twins is not None)
            + list(replacements), "flat_methods": flat_methods, "methods": out}


def assess_cascade(*, runner, layer: torch.nn.Module, cell: dict, n_images: int, batch_size: int = 64,
                   seed: int = 0) -> dict | None:
    """Cascading randomization (Adebayo et al. 2018) of the first ``n_images`` explained images: the
    model's blocks re-initialized from the output back, one block per step (quality.layer_groups),
    every method that gave non-flat maps recomputed after each step for the same classes, and the
    rank correlation with the trained model's maps per step (mean, 95% interval, n)."""
    n = min(n_images, len(cell["image_ids"]))
    methods = [m for m in sorted(cell["maps"]) if not _flat(cell["maps"][m][:n])]
    if not n or not methods:
        return None
    name = _layer_name(runner.model, layer)
    images = runner.inputs(torch.from_numpy(cell["crops"][:n]))
    targets = torch.as_tensor(cell["targets"][:n]).long()

    def explain(model: torch.nn.Module) -> dict[str, np.ndarray]:
        maps = explain_cell(model=model, target_layer=dict(model.named_modules())[name], images=images,
                            methods=methods, targets=targets, batch_size=batch_size, progress=False)["maps"]
        return {m: maps[m].astype(np.float32) for m in methods}

    steps, rho = Q.randomization_cascade(runner.model, explain, Q.layer_groups(Q.cascade_layers(runner.model)), seed)
    return {"n": int(n), "steps": steps, "methods": {m: [Q.mean_ci(r) for r in v] for m, v in rho.items()}}


def assess_drift(*, runner, layer: torch.nn.Module, originals: np.ndarray, windows: list, copies: dict,
                 methods: list[str], batch_size: int = 64, fraction: float = 0.1) -> dict:
    """Explanation drift under sharing: every method's maps of pre-social images (``originals``, uint8
    crops, each covering ``windows[i]`` of its image) and of their shared copies, each explained for
    the class the model predicts for the original, aligned on one grid over the part of the scene
    both show (a platform may resize), and compared: rank correlation and the overlap of the top
    ``fraction`` pixels, per platform (mean, 95% interval, n; pairs with a flat map left out).
    ``copies``: {platform: (crops, index of each copy's original, windows)}."""
    size = originals.shape[1]

    def maps_of(crops: np.ndarray, targets) -> tuple[dict, torch.Tensor]:
        res = explain_cell(model=runner.model, target_layer=layer, images=runner.inputs(torch.from_numpy(crops)),
                           methods=methods, targets=targets, batch_size=batch_size, progress=False)
        return {m: v.astype(np.float32) for m, v in res["maps"].items()}, res["targets"]

    before, targets = maps_of(originals, "predicted")
    before = {m: v for m, v in before.items() if not _flat(v)}  # no rank order to compare (reported by assess_cell)
    out: dict = {"n": int(len(originals)), "fraction": fraction, "pairs": {}, "methods": {m: {} for m in before}}
    for platform, (crops, index, copy_windows) in copies.items():
        after, _ = maps_of(crops, torch.as_tensor(targets)[torch.as_tensor(index)])
        common = [Q.intersect(windows[i], w) for i, w in zip(index, copy_windows)]
        out["pairs"][platform] = int(len(index))
        for m, maps in before.items():
            a = Q.align_maps(maps[index], [windows[i] for i in index], common, size)
            b = Q.align_maps(after[m], copy_windows, common, size)
            flat = Q.flat_each(a) | Q.flat_each(b)
            out["methods"][m][platform] = {
                "spearman": Q.mean_ci(np.where(flat, np.nan, Q.spearman(a, b))),
                f"top{round(100 * fraction)}_overlap": Q.mean_ci(np.where(flat, np.nan, Q.top_overlap(a, b, fraction)))}
    return out


def robustness_subset(n: int, k: int | None, seed: int = 0) -> np.ndarray:
    """Which of a test set's ``n`` images the robustness curves use: a seeded random ``k`` of them in
    ascending order, or all when ``k`` is 0/None or not below ``n``. A subset of the subset is the
    subset itself, so a caller may read only these images and pass the same ``k`` on."""
    if k and n > k:
        return np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
    return np.arange(n)


def _fresh_model(settings: dict, seed: int, device) -> torch.nn.Module:
    """The same architecture freshly initialized by timm (its own init, so activations neither
    vanish nor explode): Adebayo et al.'s fully randomized model."""
    from ..models import model_of

    torch.manual_seed(seed)
    return model_of(settings).to(device).eval()


def _layer_name(model: torch.nn.Module, layer: torch.nn.Module) -> str:
    for name, mod in model.named_modules():
        if mod is layer:
            return name
    raise ValueError("the target layer is not a submodule of the model")


def robustness(predict, runner, crops: np.ndarray, labels: np.ndarray, jpeg_qualities, scales,
               batch_size: int = 64, threshold: float = 0.5) -> dict:
    """Accuracy on the clean test crops, re-compressed at each JPEG quality and rescaled by each factor."""
    def accuracy(batch: np.ndarray) -> float:
        correct = 0
        for i in range(0, len(batch), batch_size):
            p = predict(runner.inputs(torch.from_numpy(batch[i:i + batch_size])))[:, 1].cpu().numpy()
            correct += int(((p >= threshold).astype(int) == labels[i:i + batch_size]).sum())
        return correct / max(1, len(batch))

    return {"n": int(len(crops)), "clean": accuracy(crops),
            "jpeg": {str(q): accuracy(Q.jpeg(crops, q)) for q in jpeg_qualities},
            "scale": {str(f): accuracy(Q.rescale(crops, f)) for f in scales}}


def nan_to_none(obj):
    """JSON-safe copy: NaN floats become null."""
    if isinstance(obj, dict):
        return {k: nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [nan_to_none(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj
