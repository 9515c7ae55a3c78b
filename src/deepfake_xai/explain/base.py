"""The base class of explanation methods, the shared per-batch context and the registry."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ..registry import ModelError

METHODS: dict[str, Method] = {}


class NotApplicable(Exception):
    """The method is undefined for this model (e.g. CAM without a pooling + linear head)."""


def register(cls):
    """Class decorator: add one instance of a method to the registry under ``cls.name``, which the
    catalog must list (its opt-in flag, sanity expectation and display order are there)."""
    from .catalog import BY_NAME

    if cls.name not in BY_NAME:
        raise ValueError(f"explanation method {cls.name!r} ({cls.__name__}) is not in explain/catalog.py: "
                         "add it there (its title, whether it is opt-in)")
    cls.info = BY_NAME[cls.name]
    METHODS[cls.name] = cls()
    return cls


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise KeyError(f"unknown explanation method {name!r}; known: {', '.join(sorted(METHODS))}")
    return METHODS[name]


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """Per-image min-max scaling to [0, 1] (a constant map becomes 0), as pytorch-grad-cam does."""
    flat = maps.flatten(1)
    lo = flat.min(1).values.view(-1, 1, 1)
    maps = maps - lo
    hi = maps.flatten(1).max(1).values.view(-1, 1, 1)
    return maps / (hi + 1e-7)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling with half-pixel centers (cv2.resize's INTER_LINEAR)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]


def token_grid(model: nn.Module, n_tokens: int) -> tuple[int, int]:
    """(rows, columns) of the patch grid that ``n_tokens`` patch tokens of ``model`` lie on: the
    patch embedding's grid when it has one of that size (timm ViTs), else the square."""
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if grid is not None and len(grid) == 2 and grid[0] * grid[1] == n_tokens:
        return int(grid[0]), int(grid[1])
    side = round(n_tokens ** 0.5)
    if side * side != n_tokens:
        raise ModelError(f"{type(model).__name__}: {n_tokens} patch tokens lie on no square grid and the model "
                         "names none (patch_embed.grid_size): set models.<name>.target_layer to a feature map")
    return side, side


def as_feature_map(t: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """A target layer's output as (B, C, H, W): a CNN's feature map as it is; a transformer's token
    sequence (B, N, C) with its class, register and distillation tokens dropped (timm's
    ``num_prefix_tokens``) and the patch tokens laid on the patch grid, channels first: the
    ``reshape_transform`` pytorch-grad-cam's tutorials give for ViTs. A reshape, so the gradients
    reshaped the same way are the gradients of the reshaped activations."""
    if t.ndim == 4:
        # timm's channels-last feature maps (Swin, some hybrids: output_fmt NHWC) turned channels first
        return t.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else t
    if t.ndim == 3:
        tokens = t[:, int(getattr(model, "num_prefix_tokens", 0) or 0):]
        h, w = token_grid(model, tokens.shape[1])
        return tokens.reshape(len(t), h, w, t.shape[2]).permute(0, 3, 1, 2)
    raise ModelError(f"{type(model).__name__}: the target layer's output has shape {tuple(t.shape)}, neither a "
                     "feature map (B, C, H, W) nor a token sequence (B, N, C): set models.<name>.target_layer to "
                     "a convolutional stage or a transformer block")


@contextmanager
def frozen_parameters(model: nn.Module):
    """Parameters not requiring gradients for the duration: no method needs dS/dW, and without it
    autograd records nothing before the target layer when only dS/dA is asked for (the input does
    not require gradients and the layer's output is cut into a new leaf), so the backbone's forward
    keeps no graph. Restores each parameter's flag afterwards."""
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@dataclass
class Context:
    """What one forward and one backward pass of a batch give every method.

    ``activations``/``gradients``: the target layer's output A and dS_c/dA, as (B, C, H, W) feature
    maps (token sequences laid on their patch grid, :func:`as_feature_map`); ``input_grad``: dS_c/dI.
    """

    model: nn.Module
    images: torch.Tensor
    targets: torch.Tensor
    target_layer: nn.Module
    logits: torch.Tensor | None = None
    activations: torch.Tensor | None = None
    gradients: torch.Tensor | None = None
    input_grad: torch.Tensor | None = None
    tokens: bool = False  # the target layer gave a token sequence, laid on its patch grid
    cache: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.images.shape[-2:])

    @classmethod
    def capture(cls, model: nn.Module, images: torch.Tensor, targets, target_layer: nn.Module,
                need_gradients: bool = True, need_input_grad: bool | None = None,
                amp: bool = False) -> Context:
        """Run the batch once, keeping the target layer's activations and (optionally) the gradients
        of each image's target logit with respect to them and to the input.

        ``targets``: a class, one class per image, or a function of the logits returning one class
        per image (e.g. the predicted class), so that choosing the target costs no second forward.

        Only what is asked for is differentiated: the CAM family needs dS/dA alone, a backward pass
        through the head; the input gradient (saliency) costs a backward pass through the network.
        ``amp`` runs the forward pass in bf16 on CUDA (faster; maps then agree with the fp32
        reference to about 1e-2 instead of 1e-6).
        """
        if need_input_grad is None:
            need_input_grad = need_gradients
        store = {}
        handle = target_layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
        try:
            model.eval()
            with torch.set_grad_enabled(need_gradients or need_input_grad), frozen_parameters(model):
                x = images.detach().clone().requires_grad_(need_input_grad)
                if need_gradients and not need_input_grad:
                    # make the target layer's output a leaf of the graph: nothing before it is kept
                    handle.remove()
                    handle = target_layer.register_forward_hook(
                        lambda m, i, o: store.__setitem__("a", o.detach().requires_grad_(True)) or store["a"])
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and images.is_cuda):
                    logits = model(x).float()
        finally:
            handle.remove()
        if callable(targets):
            targets = targets(logits.detach())
        targets = torch.as_tensor(targets, device=images.device).long().expand(len(images))
        ctx = cls(model, images, targets, target_layer)
        ctx.logits = logits.detach()
        acts = store["a"]
        wrt = [t for t, want in ((acts, need_gradients), (x, need_input_grad)) if want]
        if wrt:
            grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), wrt)
            grads = list(grads)
            if need_gradients:
                ctx.gradients = as_feature_map(grads.pop(0).detach(), model)
            if need_input_grad:
                ctx.input_grad = grads.pop(0).detach()
        ctx.activations = as_feature_map(acts.detach(), model)
        ctx.tokens = acts.ndim == 3
        return ctx


class Method:
    """One explanation method. Subclasses override :meth:`raw` (one small function)."""

    name = ""
    needs_gradients = True  # dS/dA at the target layer
    needs_input_grad = False  # dS/dI (a backward pass through the whole network)
    cam_family = False  # a map at the target layer's resolution (else at the input's)
    info = None  # its catalog entry (set by register)

    @property
    def opt_in(self) -> bool:
        """Run only when the config names it (explain/catalog.py says which)."""
        return self.info.opt_in

    def raw(self, ctx: Context) -> torch.Tensor:
        """The unnormalized map, (B, h, w)."""
        raise NotImplementedError

    def from_context(self, ctx: Context) -> torch.Tensor:
        """Maps in [0, 1] at the input's size. CAM-family maps are normalized at the layer's
        resolution, upsampled and normalized again, exactly as pytorch-grad-cam does."""
        raw = self.raw(ctx).float()
        if self.cam_family:
            raw = upsample(normalize(torch.relu(raw)), ctx.size)
        return normalize(raw)

    def __call__(self, model: nn.Module, images: torch.Tensor, target, target_layer: nn.Module) -> torch.Tensor:
        """The one signature: model, batch of images, target class(es) -> maps in [0, 1]."""
        return self.from_context(Context.capture(model, images, target, target_layer, self.needs_gradients,
                                                 self.needs_input_grad))
