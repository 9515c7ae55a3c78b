"""The model registry without torch: the paper's seven CNNs by timm name, each with the layer CAM
methods explain, and the name check the config validation runs.

Kept apart from :mod:`deepfake_xai.models` so that Snakemake can validate a config without
importing torch and timm (4 s per `snakemake` start on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass


class ModelError(ValueError):
    """A model, layer or weights file that does not fit (the message names which and what to do)."""


@dataclass(frozen=True)
class ModelInfo:
    arch: str
    target_layer: str


# The paper's models. target_layer: the last convolutional feature map, i.e. the input of the
# global pool (vgg19: the last max-pool, which feeds timm's convolutional pre-logits MLP).
REGISTRY: dict[str, ModelInfo] = {
    "vgg19": ModelInfo("vgg19", "features.36"),
    "resnet50": ModelInfo("resnet50", "layer4"),
    "densenet121": ModelInfo("densenet121", "features.norm5"),
    "mnasnet_100": ModelInfo("mnasnet_100", "bn2"),
    "efficientnet_b0": ModelInfo("efficientnet_b0", "bn2"),
    "efficientnet_b1": ModelInfo("efficientnet_b1", "bn2"),
    "efficientnet_b2": ModelInfo("efficientnet_b2", "bn2"),
}


class UnknownModelError(ValueError):
    pass


def check_arch(arch: str) -> None:
    """Raise :class:`UnknownModelError` (with close matches) if timm does not know ``arch``.
    The registry's models are timm's own names, checked without importing timm."""
    if arch in REGISTRY:
        return
    import difflib

    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(f"timm has no model named {arch!r}{hint}")


def info(name: str, arch: str | None = None, target_layer: str | None = None) -> ModelInfo:
    """Registry entry of a configured model, with config overrides applied."""
    base = REGISTRY.get(arch or name)
    arch = arch or (base.arch if base else name)
    if target_layer is None:
        target_layer = base.target_layer if base else ""
    return ModelInfo(arch, target_layer)
