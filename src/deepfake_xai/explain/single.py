"""One image explained, as `deepfake-xai explain` does: the verdict, and the slides' Grad-CAM panel
with one overlay per further method."""

from __future__ import annotations

from pathlib import Path


def explain_image(image: str | Path, *, weights: str | Path, settings: dict, device: str | None, threads: int,
                  methods: list[str] | None, target: str, threshold: float, out: str | Path) -> float:
    """Print the verdict on ``image`` and write its panel to ``out``; returns P(fake). The training
    pipeline's own steps: resize (if the model's settings do), center-crop the cached size, then the
    model input's center crop."""
    import torch

    from ..data.cache import preprocess
    from ..data.images import load_rgb
    from ..runtime import crop_batch, explained_model
    from .bulk import explain_cell
    from .catalog import PANEL_METHODS, SINGLE_IMAGE_METHODS
    from .panels import gradcam_panel, grid, overlay_tile, save_png

    runner, layer = explained_model(weights, settings, device, threads)
    crop = preprocess(load_rgb(image), settings.get("resize"), max(settings.get("center_crop") or 0, runner.image_size))
    batch = torch.tensor(crop[None])  # a copy: the decoded image may be a read-only array
    result = explain_cell(model=runner.model, target_layer=layer, images=runner.inputs(batch),
                          methods=methods or list(SINGLE_IMAGE_METHODS), targets=target, batch_size=1,
                          progress=False, threshold=threshold)
    prob = float(result["probs"][0])
    print(f"{image}: {'FAKE' if prob >= threshold else 'REAL'} (probability of fake {prob:.4f}, "
          f"threshold {threshold:g}; {settings['arch']}, input {runner.image_size} px)")
    for name, reason in result["not_applicable"].items():
        print(f"  {name}: not applicable ({reason})")
    maps = {k: v[0] for k, v in result["maps"].items()}
    shown = crop_batch(batch, runner.image_size)[0].numpy()  # what the model saw
    panel = gradcam_panel(shown, maps, None, prob, threshold)
    extra = [overlay_tile(shown, m, k) for k, m in maps.items() if k not in PANEL_METHODS]
    save_png(grid([[panel], extra]) if extra else panel, out)
    print(f"panel -> {out}")
    return prob
