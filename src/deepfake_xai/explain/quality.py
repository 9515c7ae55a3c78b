"""How much a heatmap can be trusted, measured: faithfulness, localization, sanity, spatial priors,
frequency fingerprints and robustness.

- Faithfulness: deletion and insertion AUC (Petsiuk et al. 2018, RISE protocol with coarse steps),
  ROAD (Rong et al. 2022, through pytorch-grad-cam) and the confidence left when only the most
  highlighted region is kept.
- Localization, where the evidence region of a fake is known (the synthetic data records it):
  pointing game (Zhang et al. 2016, IJCV 2018) and the share of map energy inside the region
  (relevance mass accuracy, Arras et al. 2022).
- Sanity (Adebayo et al. 2018): maps of the trained model vs maps of the same architecture with
  re-initialized weights; a method whose maps barely change does not explain the model.
- Spatial priors, frequency spectra and robustness curves as the data for the report's figures.

Every function takes arrays/tensors and returns numbers; nothing here reads files.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .catalog import REPLACEMENTS

Predict = Callable[[torch.Tensor], torch.Tensor]  # normalized images (B, 3, H, W) -> class probabilities (B, C)


# ---------------------------------------------------------------- geometry

def _input_offsets(width: int, height: int, resize: int | None, center_crop: int,
                   image_size: int) -> tuple[int, int, int, int]:
    """(width, height) of the cached image after its resize, and the (x, y) offset in it of the
    model's input: the cache's center crop, then the evaluation center crop (data.cache, runtime)."""
    from ..data.cache import resized_size

    w, h = resized_size(width, height, resize, center_crop)
    inner = (center_crop - image_size) // 2
    return w, h, (w - center_crop) // 2 + inner, (h - center_crop) // 2 + inner


def box_in_crop(box: Sequence[float], width: int, height: int, resize: int | None, center_crop: int,
                image_size: int) -> tuple[float, float, float, float] | None:
    """A normalized (x0, y0, x1, y1) box of the original image in pixel coordinates of the model's
    input: the cache's resize and center crop (the cache's own geometry, including its upscaling of
    images smaller than the crop), then the evaluation center crop.
    None when the box is empty or falls outside the crop."""
    if any(not np.isfinite(v) for v in box):
        return None
    w, h, off_x, off_y = _input_offsets(width, height, resize, center_crop, image_size)
    x0, y0 = box[0] * w - off_x, box[1] * h - off_y
    x1, y1 = box[2] * w - off_x, box[3] * h - off_y
    x0, y0, x1, y1 = max(0.0, x0), max(0.0, y0), min(float(image_size), x1), min(float(image_size), y1)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def input_window(width: int, height: int, resize: int | None, center_crop: int,
                 image_size: int) -> tuple[float, float, float, float]:
    """The part of an image the model sees, as a normalized (x0, y0, x1, y1) box of the whole image:
    the cache's resize and center crop, then the evaluation center crop (box_in_crop's geometry,
    the other way round). A shared copy resized by its platform covers another box of the same scene."""
    w, h, off_x, off_y = _input_offsets(width, height, resize, center_crop, image_size)
    return off_x / w, off_y / h, (off_x + image_size) / w, (off_y + image_size) / h


def align_maps(maps: np.ndarray, windows: Sequence[Sequence[float]], onto: Sequence[Sequence[float]],
               size: int) -> np.ndarray:
    """Maps (N, h, w), each covering ``windows[i]`` of its image, resampled (bilinear) on a ``size`` x
    ``size`` grid over the box ``onto[i]`` of the same image (normalized coordinates): the maps of an
    image and of its resized copy compared pixel for pixel on one grid. Where the window and the box
    are the same and ``size`` is the maps' own, the maps come back unchanged."""
    win = torch.as_tensor(np.asarray(windows, dtype=np.float64))
    box = torch.as_tensor(np.asarray(onto, dtype=np.float64))
    centers = (torch.arange(size, dtype=torch.float64) + 0.5) / size  # pixel centres in [0, 1] of the box
    xs = box[:, 0:1] + centers[None] * (box[:, 2:3] - box[:, 0:1])  # image coordinates
    ys = box[:, 1:2] + centers[None] * (box[:, 3:4] - box[:, 1:2])
    gx = 2 * (xs - win[:, 0:1]) / (win[:, 2:3] - win[:, 0:1]) - 1  # grid_sample's [-1, 1] over each window
    gy = 2 * (ys - win[:, 1:2]) / (win[:, 3:4] - win[:, 1:2]) - 1
    grid = torch.stack([gx[:, None, :].expand(-1, size, -1), gy[:, :, None].expand(-1, -1, size)], dim=-1)
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    out = F.grid_sample(x, grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].numpy()


def intersect(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float]:
    """The overlap of two normalized boxes (both views of one scene show it)."""
    return max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])


def top_set(maps: np.ndarray, k: int) -> np.ndarray:
    """Each map's top ``k`` pixels (N, pixels) as a boolean mask; where pixels tie at the k-th value
    (the zeros of a ReLU-clipped map), the tied ones are left out rather than picked in raster order,
    so the set may hold fewer than ``k``: only the pixels the map ranks above the others."""
    flat = maps.reshape(len(maps), -1).astype(np.float64)
    kth = -np.partition(-flat, k - 1, axis=1)[:, k - 1 : k]
    at_least = flat >= kth
    return np.where(at_least.sum(axis=1, keepdims=True) == k, at_least, flat > kth)


def top_overlap(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Share of the top ``fraction`` pixels of each map in ``a`` that are also in the top ``fraction``
    of its pair in ``b``: |A & B| / max(|A|, |B|) (1: the same most salient region; about
    ``fraction``: unrelated maps; ties at the cut left out, :func:`top_set`). NaN where neither map
    ranks any pixel above the rest."""
    k = max(1, int(math.ceil(fraction * a[0].size)))
    ta, tb = top_set(a, k), top_set(b, k)
    size = np.maximum(ta.sum(axis=1), tb.sum(axis=1))
    return np.where(size > 0, (ta & tb).sum(axis=1) / np.maximum(size, 1), np.nan)


def box_mask(box: Sequence[float], h: int, w: int) -> np.ndarray:
    """Boolean (h, w) mask of the pixels whose centres lie in a pixel-coordinate box."""
    ys, xs = np.arange(h) + 0.5, np.arange(w) + 0.5
    return ((ys[:, None] >= box[1]) & (ys[:, None] <= box[3]) & (xs[None, :] >= box[0]) & (xs[None, :] <= box[2]))


def ellipse_mask(h: int, w: int, rx: float = 0.34, ry: float = 0.44) -> np.ndarray:
    """A central ellipse (radii as fractions of the side) where an aligned face sits."""
    ys, xs = (np.arange(h) + 0.5) / h - 0.5, (np.arange(w) + 0.5) / w - 0.5
    return (xs[None, :] / rx) ** 2 + (ys[:, None] / ry) ** 2 <= 1.0


# ---------------------------------------------------------------- localization

def pointing_game(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """1.0 where the map's maximum falls inside the region, else 0.0. With ties the score is the
    share of the maxima inside the region (a flat map scores the region's area: chance)."""
    flat = maps.reshape(len(maps), -1)
    peak = flat >= flat.max(axis=1, keepdims=True)
    inside = (peak & masks.reshape(len(masks), -1)).sum(axis=1)
    return inside / np.maximum(peak.sum(axis=1), 1)


def energy_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's total mass inside its region (a flat map scores the region's area share)."""
    maps = np.clip(maps.astype(np.float64), 0, None)
    total = maps.reshape(len(maps), -1).sum(axis=1)
    inside = (maps * masks).reshape(len(maps), -1).sum(axis=1)
    area = masks.reshape(len(masks), -1).mean(axis=1)
    return np.where(total > 0, inside / np.maximum(total, 1e-12), area)


# ---------------------------------------------------------------- known answers

def oracle_maps(masks: np.ndarray, sigma: float = 0.02) -> np.ndarray:
    """The answer itself as a map: each region mask, lightly smoothed (a Gaussian of ``sigma`` of
    the side, so its edge is graded like a heatmap's), in [0, 1]. What a score must rank first."""
    n, h, w = masks.shape
    x = torch.from_numpy(masks.astype(np.float32))[:, None]
    r = max(1, int(round(3 * sigma * max(h, w))))
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=torch.float32) ** 2) / (2 * (sigma * max(h, w)) ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))[:, 0].numpy()
    hi = x.reshape(n, -1).max(axis=1).reshape(n, 1, 1)
    return np.where(hi > 0, x / np.maximum(hi, 1e-12), x).astype(np.float32)


def random_maps(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Seeded uniform noise maps: no information about the region. What a score must rank last."""
    return np.random.default_rng(seed).random((n, h, w), dtype=np.float32)


# ---------------------------------------------------------------- faithfulness

def _order(maps: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Pixel indices from most to least salient (stable for ties), on ``device``: the images'
    (maps read from disk are on the CPU; the indices select pixels of images on the model's device)."""
    return torch.argsort(maps.to(device).flatten(1).float(), dim=1, descending=True, stable=True)


def blurred(images: torch.Tensor, kernel: int = 11, sigma: float = 5.0) -> torch.Tensor:
    """The RISE insertion baseline: a strongly blurred copy."""
    r = kernel // 2
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=images.dtype, device=images.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    c = images.shape[1]
    x = F.pad(images, (r, r, r, r), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


# What replaces the removed (deletion) or not yet inserted (insertion) pixels. A forensic detector
# reads high-frequency traces that most replacements destroy by themselves (Gowrisankar & Thing
# 2023), so a curve is only as good as its replacement: the report compares them on the controlled
# set (which one ranks the known answer right) and measures how much the ranking of methods moves.
JPEG_REPLACEMENT_QUALITY = 30


def replacement_images(crops: np.ndarray, kind: str, to_inputs: Callable[[torch.Tensor], torch.Tensor],
                       seed: int = 0) -> torch.Tensor:
    """The model inputs that stand in for removed pixels of uint8 crops (N, H, W, 3):
    ``black`` pixel value 0; ``mean`` each image's own mean colour; ``blur`` a strongly blurred copy
    (the RISE insertion baseline); ``noise`` Gaussian noise with each image's colour means and
    standard deviations (seeded); ``jpeg`` the image re-encoded at JPEG quality 30: the content kept,
    the fine traces gone. ``to_inputs`` turns uint8 crops into the model's normalized inputs."""
    if kind == "blur":
        return blurred(to_inputs(torch.from_numpy(crops)))
    x = crops.astype(np.float32)
    if kind == "black":
        out = np.zeros_like(x)
    elif kind == "mean":
        out = np.broadcast_to(x.mean(axis=(1, 2), keepdims=True), x.shape)
    elif kind == "noise":
        rng = np.random.default_rng(seed)
        out = x.mean(axis=(1, 2), keepdims=True) + x.std(axis=(1, 2), keepdims=True) * rng.standard_normal(x.shape)
    elif kind == "jpeg":
        return to_inputs(torch.from_numpy(jpeg(crops, JPEG_REPLACEMENT_QUALITY)))
    else:
        raise ValueError(f"unknown replacement {kind!r}; the replacements: {', '.join(REPLACEMENTS)}")
    return to_inputs(torch.from_numpy(np.clip(np.rint(out), 0, 255).astype(np.uint8)))


def _curve_images(images: torch.Tensor, mode: str,
                  baseline: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What a curve starts from and ends at: the images and zeros (deletion), or a blurred copy and
    the images (insertion); with ``baseline`` (e.g. a controlled fake's real twin) that replaces
    the zeros and the blurred copy."""
    if mode == "deletion":
        return images, torch.zeros_like(images) if baseline is None else baseline
    if mode == "insertion":
        return (blurred(images) if baseline is None else baseline), images
    raise ValueError(f"mode must be deletion or insertion, not {mode!r}")


def perturbation_curve(predict: Predict, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                       steps: int, mode: str = "deletion", batch_size: int = 64,
                       ends: tuple[np.ndarray, np.ndarray] | None = None,
                       baseline: torch.Tensor | None = None) -> np.ndarray:
    """P(target) as the most salient pixels are removed (deletion: replaced by zero, the ImageNet
    normalization mean colour) or inserted into a blurred copy (insertion), in ``steps`` equal steps.
    Returns (N, steps + 1), from 0% to 100% of the pixels.

    The first and last steps do not depend on the map (nothing or everything replaced): pass them
    as ``ends`` (see :func:`curve_ends`) to score several methods without predicting them again."""
    n, _, h, w = images.shape
    start, finish = _curve_images(images, mode, baseline)
    todo = torch.arange(1, steps) if ends is not None else torch.arange(steps + 1)
    removed = torch.round(todo.double() * (h * w) / steps).long().to(images.device)  # pixels replaced per step
    # rank[i, p]: the position of pixel p in image i's saliency order (0 = most salient)
    order = _order(maps, images.device)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(h * w, device=order.device).expand(n, -1))
    targets = targets.long()
    picked = np.empty((n, 0), dtype=np.float32)
    if len(todo):
        # the perturbed images, image-major, built one batch at a time (n * steps copies need not fit)
        probs = []
        for first in range(0, n * len(todo), batch_size):
            flat = torch.arange(first, min(first + batch_size, n * len(todo)), device=images.device)
            img, step = flat // len(todo), flat % len(todo)
            keep_start = (rank[img] >= removed[step].view(-1, 1)).view(-1, 1, h, w)
            batch = torch.where(keep_start, start[img], finish[img])
            probs.append(_target_probs(predict, batch, targets[img.cpu()], len(batch)))
        picked = np.concatenate(probs).reshape(n, len(todo))
    if ends is not None:
        first_col, last_col = (np.asarray(e, dtype=np.float32).reshape(n, 1) for e in ends)
        picked = np.concatenate([first_col, picked, last_col], axis=1)
    return picked


def curve_ends(predict: Predict, images: torch.Tensor, targets: torch.Tensor, mode: str,
               batch_size: int = 64, baseline: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """P(target) at 0% and 100% of a deletion or insertion curve: the same for every map."""
    start, finish = _curve_images(images, mode, baseline)
    probs = _target_probs(predict, torch.cat([start, finish]), targets.long().repeat(2), batch_size)
    return probs[:len(images)], probs[len(images):]


def _target_probs(predict: Predict, batch: torch.Tensor, targets: torch.Tensor, batch_size: int) -> np.ndarray:
    probs = torch.cat([predict(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)])
    return probs.gather(1, targets.view(-1, 1).to(probs.device)).view(-1).float().cpu().numpy()


def curve_auc(curve: np.ndarray) -> np.ndarray:
    """Area under each curve over [0, 1] (trapezoid rule)."""
    return np.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), axis=1)


def keep_top_confidence(predict: Predict, images: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                        keep: float = 0.2) -> np.ndarray:
    """P(target) when only the top ``keep`` fraction of pixels is kept (the rest set to zero, the
    ImageNet mean after normalization)."""
    n, _, h, w = images.shape
    k = max(1, round(keep * h * w))
    m = torch.zeros(n, h * w, dtype=torch.bool, device=images.device)
    m.scatter_(1, _order(maps, images.device)[:, :k], True)
    return _target_probs(predict, torch.where(m.view(n, 1, h, w), images, torch.zeros_like(images)),
                         targets.long(), n)


def road_scores(predict: Predict, images: torch.Tensor, maps: np.ndarray, targets: Sequence[int],
                percentiles: Sequence[int], batch_size: int = 64) -> np.ndarray:
    """ROAD combined (Rong et al. 2022) exactly as pytorch-grad-cam's ROADCombined computes it:
    (LeRF - MoRF) / 2 of the target's softmax, averaged over ``percentiles``; higher means removing
    what the map calls important hurts more.

    pytorch-grad-cam's own perturbations (noisy linear imputation) are used in its order, so the
    random noise and the scores are the same; but the unperturbed prediction, which cancels in the
    difference, is not computed four times per percentile, and all perturbed images of a method go
    through the model in batches.
    """
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer, RemoveLeastRelevantFirst, RemoveMostRelevantFirst

    maps = maps.astype(np.float32)
    cpu = images.detach().cpu()
    perturbed = []
    for removal in (RemoveLeastRelevantFirst, RemoveMostRelevantFirst):  # ROADCombined's order
        for p in percentiles:
            perturb = removal(p, NoisyLinearImputer())
            perturbed += [perturb(cpu[i], torch.from_numpy(maps[i])) for i in range(len(cpu))]
    batch = torch.stack(perturbed).to(images.device)
    n, k = len(images), len(percentiles)
    tg = torch.as_tensor(list(targets)).long().repeat(2 * k)
    probs = _target_probs(predict, batch, tg, batch_size).reshape(2, k, n)
    return ((probs[0] - probs[1]) / 2).mean(axis=0).astype(float)


# ---------------------------------------------------------------- sanity check

def randomized_copy(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """The same architecture with every parameterized layer re-initialized (Adebayo et al.'s
    full randomization); BatchNorm layers reset to identity statistics."""
    import copy

    twin = copy.deepcopy(model)
    torch.manual_seed(seed)
    for m in twin.modules():
        if hasattr(m, "reset_parameters") and callable(m.reset_parameters):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return twin.eval()


FLAT_STD = 1e-6  # a map whose values spread less than this ranks no pixel above another


def flat_each(maps: np.ndarray) -> np.ndarray:
    """Per map: whether it is flat (constant, e.g. all zero after a ReLU): no pixel order to score."""
    return maps.reshape(len(maps), -1).std(axis=1) < FLAT_STD


def cascade_layers(model: torch.nn.Module) -> list[str]:
    """The layers Adebayo et al.'s cascading randomization re-initializes, output end first: every
    module with ``reset_parameters``, in reverse registration order (Quantus's MPRT "top_down" order)."""
    return [n for n, m in model.named_modules() if hasattr(m, "reset_parameters")][::-1]


def layer_groups(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """The cascade's steps for ``names`` in cascade order: the layers of one numbered child of a
    container together (``blocks.3`` of an EfficientNet: a stage; ``layer4.1``: a ResNet block;
    ``features.12``: one VGG layer), everything before the first such block as one ``head`` step
    (classifier, final norm and conv) and everything after the last as ``stem``; a model without
    numbered children gets a step per top-level module."""
    def block(name: str) -> str | None:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) >= 2 and parts[1].isdigit() else None

    blocks = [i for i, n in enumerate(names) if block(n)]
    groups: list[tuple[str, list[str]]] = []
    for i, name in enumerate(names):
        if blocks:
            key = block(name) or ("head" if i < blocks[0] else "stem" if i > blocks[-1] else name.split(".")[0])
        else:
            key = name.split(".")[0]
        if groups and groups[-1][0] == key:
            groups[-1][1].append(name)
        else:
            groups.append((key, [name]))
    return groups


def randomization_cascade(model: torch.nn.Module, explain: Callable[[torch.nn.Module], dict[str, np.ndarray]],
                          groups: Sequence[tuple[str, Sequence[str]]] | None = None,
                          seed: int = 42) -> tuple[list[str], dict[str, np.ndarray]]:
    """Adebayo et al.'s (2018) cascading model-parameter randomization: layers are re-initialized one
    step at a time from the output back to the input, and after each step every method's maps of
    the same images and classes are compared with the trained model's by rank correlation. A method
    that explains the model loses the correlation as soon as what it depends on is random.

    ``explain(model)`` returns {method: maps (N, H, W)}; ``groups`` the steps (name, layers), default
    one layer per step in :func:`cascade_layers` order. Each layer is re-initialized by its own
    ``reset_parameters`` after ``torch.manual_seed(seed + 1)``, exactly as Quantus's MPRT does, so
    the two randomize identically. Returns the steps' names and {method: (steps, N) correlations};
    NaN where either map is flat (no rank order to correlate)."""
    import copy

    original = explain(model)
    twin = copy.deepcopy(model).eval()
    modules = dict(twin.named_modules())
    steps = list(groups) if groups is not None else [(n, [n]) for n in cascade_layers(twin)]
    rho: dict[str, list[np.ndarray]] = {m: [] for m in original}
    for _, layers in steps:
        for name in layers:
            torch.manual_seed(seed + 1)
            modules[name].reset_parameters()
        maps = explain(twin)
        for m, ref in original.items():
            flat = flat_each(ref) | flat_each(maps[m])
            rho[m].append(np.where(flat, np.nan, spearman(ref, maps[m])))
    return [name for name, _ in steps], {m: np.stack(v) for m, v in rho.items()}


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rank correlation of each pair of maps (average ranks for ties)."""
    from scipy.stats import rankdata

    ra = rankdata(a.reshape(len(a), -1).astype(np.float64), axis=1)
    rb = rankdata(b.reshape(len(b), -1).astype(np.float64), axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(axis=1) * (rb**2).sum(axis=1))
    return np.where(den > 0, (ra * rb).sum(axis=1) / np.maximum(den, 1e-12), 0.0)


def ssim(a: np.ndarray, b: np.ndarray, window: int = 7) -> np.ndarray:
    """Mean structural similarity of each pair of maps in [0, 1] (uniform window, Wang et al. 2004)."""
    x = torch.from_numpy(a.astype(np.float64)).unsqueeze(1)
    y = torch.from_numpy(b.astype(np.float64)).unsqueeze(1)
    window = min(window, x.shape[-1], x.shape[-2])
    pool = lambda t: F.avg_pool2d(t, window, stride=1)  # noqa: E731
    mx, my = pool(x), pool(y)
    vx, vy, cxy = pool(x * x) - mx**2, pool(y * y) - my**2, pool(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2, 3)).numpy()


# ---------------------------------------------------------------- frequency and robustness

def mean_log_spectrum(images: np.ndarray) -> np.ndarray:
    """Mean log-magnitude spectrum (DC centred) of uint8 RGB images (N, H, W, 3), on luminance with
    each image's mean removed."""
    gray = images.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    gray -= gray.mean(axis=(1, 2), keepdims=True)
    spec = np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(1, 2)))
    return np.log(spec + 1e-6).mean(axis=0)


def jpeg(images: np.ndarray, quality: int) -> np.ndarray:
    """uint8 RGB images re-encoded as JPEG at ``quality`` and decoded again (PIL)."""
    from ..data.images import jpeg_roundtrip

    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = jpeg_roundtrip(img, quality)
    return out


def rescale(images: np.ndarray, factor: float) -> np.ndarray:
    """uint8 RGB images resized by ``factor`` (bicubic) and back to their size: what a platform's
    downscaling (factor < 1) or upscaling (factor > 1) leaves of the high frequencies."""
    from PIL import Image

    h, w = images.shape[1:3]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    out = np.empty_like(images)
    for i, img in enumerate(images):
        out[i] = np.asarray(Image.fromarray(img).resize(size, Image.BICUBIC).resize((w, h), Image.BICUBIC))
    return out


def bootstrap_ci(values: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 groups: np.ndarray | None = None) -> tuple[float, float] | None:
    """Percentile 95% interval of the mean over resampled items (None for fewer than two values).
    ``groups``: resample whole groups (e.g. one controlled image scored by two models: its values
    move together), so correlated values are not counted as independent evidence."""
    values = np.asarray(values, dtype=float)
    keep = np.isfinite(values)
    values = values[keep]
    if len(values) < 2:
        return None
    rng = np.random.default_rng(seed)
    if groups is None:
        means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    else:
        member = np.unique(np.asarray(groups)[keep], return_inverse=True)[1]
        k = int(member.max()) + 1
        if k < 2:
            return None
        sums, counts = np.bincount(member, weights=values, minlength=k), np.bincount(member, minlength=k)
        drawn = np.stack([np.bincount(rng.integers(0, k, size=k), minlength=k) for _ in range(n_boot)])
        means = (drawn @ sums) / np.maximum(drawn @ counts, 1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def mean_ci(values, groups=None) -> dict:
    """Mean, n and bootstrap 95% interval of the finite values (``groups``: see :func:`bootstrap_ci`)."""
    values = np.asarray(values, dtype=float)
    ci = bootstrap_ci(values, groups=groups)
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()) if len(values) else math.nan, "n": int(len(values)),
            "ci95": list(ci) if ci else None}
