"""PNG figures of heatmaps: the slides' Grad-CAM panel and per-method montages across models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CELL = 128  # display size of one tile


def colorize(m: np.ndarray) -> np.ndarray:
    """A [0, 1] map as a jet-coloured RGB uint8 image."""
    from matplotlib import colormaps

    return (colormaps["jet"](np.clip(m.astype(np.float32), 0, 1))[..., :3] * 255).astype(np.uint8)


def overlay(img: np.ndarray, m: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    return (img.astype(np.float32) * (1 - alpha) + colorize(m).astype(np.float32) * alpha).astype(np.uint8)


def _tile(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr).resize((CELL, CELL), Image.Resampling.NEAREST)


def _label(img: Image.Image, text: str) -> Image.Image:
    canvas = Image.new("RGB", (img.width, img.height + 16), "white")
    canvas.paste(img, (0, 16))
    ImageDraw.Draw(canvas).text((2, 2), text, fill="black")
    return canvas


def grid(rows: list[list[Image.Image]]) -> Image.Image:
    w = max(sum(t.width for t in r) for r in rows)
    h = sum(max(t.height for t in r) for r in rows)
    out = Image.new("RGB", (w, h), "white")
    y = 0
    for r in rows:
        x = 0
        for t in r:
            out.paste(t, (x, y))
            x += t.width
        y += max(t.height for t in r)
    return out


def gradcam_panel(crop: np.ndarray, maps: dict[str, np.ndarray], label: int | None, prob: float,
                  threshold: float = 0.5) -> Image.Image:
    """Original with prediction (and the true class in brackets when ``label`` is known), Grad-CAM
    heatmap, overlay, guided backprop, guided Grad-CAM."""
    verdict = "fake" if prob >= threshold else "real"
    truth = "" if label is None else f" ({'fake' if label == 1 else 'real'})"
    tiles = [_label(_tile(crop), f"{verdict} p={prob:.2f}{truth}")]
    if "gradcam" in maps:
        tiles += [_label(_tile(colorize(maps["gradcam"])), "Grad-CAM"),
                  _label(_tile(overlay(crop, maps["gradcam"])), "overlay")]
    for name, title in (("guided_backprop", "guided backprop"), ("guided_gradcam", "guided Grad-CAM")):
        if name in maps:
            tiles.append(_label(_tile((np.clip(maps[name].astype(np.float32), 0, 1) * 255).astype(np.uint8)
                                      [..., None].repeat(3, -1)), title))
    return grid([tiles])


def overlay_tile(crop: np.ndarray, m: np.ndarray, title: str) -> Image.Image:
    """One titled tile: ``m`` over ``crop``."""
    return _label(_tile(overlay(crop, m)), title)


def save_png(img: Image.Image, path: str | Path) -> None:
    from ..io import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        img.save(tmp, format="PNG")


def montage(cells: dict[str, dict], method: str, n: int) -> Image.Image:
    """Rows: the first ``n`` (shared) images; columns: models, each the map of ``method``."""
    models = list(cells)
    first = cells[models[0]]
    rows = [[_label(Image.new("RGB", (CELL, 1), "white"), f"{method}: image")] +
            [_label(Image.new("RGB", (CELL, 1), "white"), m[:20]) for m in models]]
    for i, iid in enumerate(first["image_ids"][:n]):
        row = [_tile(first["crops"][i])]
        for m in models:
            c = cells[m]
            hit = np.flatnonzero(c["image_ids"] == iid)
            if method in c["maps"] and len(hit):
                row.append(_tile(overlay(c["crops"][hit[0]], c["maps"][method][hit[0]])))  # untitled grid cell
            else:
                reason = "n/a" if method in c["info"]["not_applicable"] else "missing"
                row.append(_label(Image.new("RGB", (CELL, CELL - 16), "lightgray"), reason))
        rows.append(row)
    return grid(rows)
