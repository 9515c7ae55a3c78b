"""Models: timm CNNs with a two-class head, local pretrained weights, layer lookup. The registry
(the paper's seven CNNs and their CAM layers) lives in :mod:`deepfake_xai.registry`.

Any other timm architecture works by name too (``models: {convnext_tiny: {}}`` in the config); its
target layer defaults to the input of the global pool, which is what CAM and Grad-CAM need.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .registry import REGISTRY, ModelError, ModelInfo, UnknownModelError, check_arch, info

__all__ = ["NUM_CLASSES", "REGISTRY", "ModelInfo", "UnknownModelError", "check_arch", "info", "create_model",
           "read_state_dict", "load_backbone", "count_parameters", "get_module", "pooled_feature_layer", "ModelError",
           "model_of", "check_input_size"]

NUM_CLASSES = 2  # 0 real, 1 fake


def create_model(
    arch: str,
    num_classes: int = NUM_CLASSES,
    pretrained_file: str | Path | None = None,
    model_args: dict | None = None,
) -> nn.Module:
    """A timm model with a ``num_classes`` head, never downloading anything (the workflow's
    ``pretrained`` stage fetches weights once: :mod:`deepfake_xai.pretrained`).

    ``pretrained_file`` loads local weights (safetensors, or a PyTorch file read with
    ``weights_only=True``); tensors whose shape does not match (the 1000-class ImageNet head) are
    skipped and the new head keeps its init.
    ``model_args``: timm's keyword arguments of the architecture (a ViT's ``img_size``, ``patch_size``).
    """
    import timm

    check_arch(arch)
    try:
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **(model_args or {}))
    except TypeError as err:
        raise ModelError(f"{arch}: timm refuses model_args {model_args} ({err})") from None
    if pretrained_file:
        load_backbone(model, pretrained_file)
    return model


def model_of(settings: dict, **kwargs) -> nn.Module:
    """The model a job's settings describe (arch and model_args), with ``create_model``'s keywords."""
    return create_model(settings["arch"], model_args=settings.get("model_args"), **kwargs)


def check_input_size(model: nn.Module, size: int, arch: str) -> None:
    """One forward pass at ``size`` px: a clear error where the model cannot take it (a ViT's position
    embedding is made for one grid), instead of torch's traceback in the first batch."""
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype))
    except (AssertionError, RuntimeError) as err:
        raise ModelError(f"{arch} does not take {size} px inputs ({str(err).splitlines()[0]}); for a ViT set "
                         f"models.<name>.model_args: {{img_size: {size}}} (or image_size to the size it takes)"
                         ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Weights from a safetensors file or a PyTorch file (never unpickles arbitrary objects)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{path}: not loadable as plain tensors ({err}); convert it to safetensors"
        ) from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a dict of tensors (a state dict)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_backbone(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load matching tensors from ``path``; return the skipped and missing keys."""
    state = read_state_dict(path)
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        misfit = next((f"{k}: file {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
                       if k in own), "no key in common")
        raise ModelError(f"{path}: no tensor fits the model's parameters ({misfit}): weights of another "
                         "architecture or input size?")
    model.load_state_dict(usable, strict=False)
    return {
        "skipped": sorted(set(state) - set(usable)),
        "missing": sorted(set(own) - set(usable)),
    }


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def get_module(model: nn.Module, dotted: str) -> nn.Module:
    """The sub-module at a dotted path such as ``features.norm5`` or ``layer4``."""
    try:
        return model.get_submodule(dotted)
    except AttributeError:
        near = [n for n, _ in model.named_modules() if n and n.split(".")[-1] == dotted.split(".")[-1]][-3:]
        raise ModelError(f"{type(model).__name__} has no layer {dotted!r}"
                         + (f" (layers of that name: {', '.join(near)})" if near else "")
                         + ": set models.<name>.target_layer to one of its module names") from None


def pooled_feature_layer(model: nn.Module, image_size: int = 64) -> str:
    """The dotted name of the layer whose output the global pool reads (what ``forward_features``
    returns): the CAM target layer of a timm model outside the registry.

    Found by running ``forward_features`` once on a small input with a hook on every module; of the
    modules that returned that very tensor (a block and its last child may), the outermost one."""
    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features: set models.<name>.target_layer")
    fired: list[tuple[str, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, name=name: fired.append((name, o)))
               for name, m in model.named_modules() if name]
    param = next(model.parameters())
    try:
        with torch.no_grad():
            out = model.eval().forward_features(
                torch.zeros(1, 3, image_size, image_size, device=param.device, dtype=param.dtype))
    finally:
        for h in handles:
            h.remove()
    if out.ndim == 3:
        # a transformer: its head reads the class token (or pooled tokens) after the final norm, where
        # the patch tokens get no gradient; the last block's input norm (pytorch-grad-cam's choice
        # for ViTs) is where the patch tokens still reach the class token through attention
        blocks = [name for name, _ in model.named_modules() if name.endswith(".norm1")]
        if blocks:
            return blocks[-1]
    names = [name for name, o in fired if o is out]  # hooks fire inner modules first
    if not names:
        raise ValueError(f"no single layer of {type(model).__name__} returns its pooled features: "
                         "set models.<name>.target_layer")
    return names[-1]
