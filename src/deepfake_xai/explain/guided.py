"""Guided backpropagation for any network's activations, and Guided Grad-CAM.

Guided backpropagation (Springenberg et al. 2015) passes a gradient back through an activation only
where both the forward input and the incoming gradient are positive. pytorch-grad-cam implements
it by swapping ``nn.ReLU`` modules alone, so on EfficientNet (SiLU), ConvNeXt or a ViT (GELU) it
silently returns the plain gradient. Here every elementwise activation module f of a *copy* of the
model is wrapped so that its backward pass is

    grad_in = relu(grad_out) * f'(x) * [x > 0]

the activation's own slope (autograd's, so no per-class formula) gated twice, as for ReLU:

- ReLU (and ReLU6, LeakyReLU): f' is 1 on x > 0, so this is Springenberg's rule exactly;
- SiLU/Swish, GELU, Mish, Hardswish, ELU, CELU, SELU, Softplus (and timm's versions): where x > 0
  these are close to the identity and f' (about 0.5-1.1) is kept; the negative side, where they
  differ from ReLU, is cut as ReLU would cut it.

Gates that multiply features (sigmoid in squeeze-excitation, softmax in attention) and the
normalizations are not activations of this kind and keep their plain gradient.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .base import Context, Method, register

# Elementwise activations guided; sigmoid/tanh/softmax gates are left alone (see above).
GUIDED_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.GELU, nn.Mish, nn.Hardswish, nn.ELU,
                      nn.CELU, nn.SELU, nn.Softplus)
# timm's own activation classes (timm.layers.activations*), by name
TIMM_GUIDED = {"Swish", "SwishMe", "Mish", "MishMe", "HardSwish", "HardSwishMe", "HardMish", "HardMishMe",
               "GELU", "GELUTanh", "QuickGELU", "PReLU"}


class _GuidedFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, module):
        ctx.save_for_backward(x)
        ctx.module = module
        return module(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        with torch.enable_grad():
            xx = x.detach().requires_grad_(True)
            (local,) = torch.autograd.grad(ctx.module(xx), xx, grad.clamp(min=0))  # relu(g) * f'(x)
        return local * (x > 0), None


class Guided(nn.Module):
    """An activation module whose backward pass is the guided one (module docstring)."""

    def __init__(self, activation: nn.Module):
        super().__init__()
        if hasattr(activation, "inplace"):
            activation.inplace = False  # the backward pass evaluates it again on the saved input
        self.activation = activation

    def forward(self, x):
        return _GuidedFn.apply(x, self.activation)


def is_guided_activation(module: nn.Module) -> bool:
    kind = type(module)
    return kind in GUIDED_ACTIVATIONS or (kind.__module__.startswith("timm.") and kind.__name__ in TIMM_GUIDED)


def guided_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every elementwise activation module wrapped in :class:`Guided`."""
    model = copy.deepcopy(model).eval()
    swapped = 0
    for parent in list(model.modules()):
        if isinstance(parent, Guided):
            continue
        for name, child in list(parent.named_children()):
            if is_guided_activation(child):
                setattr(parent, name, Guided(child))
                swapped += 1
    if swapped == 0:
        raise ValueError(f"{type(model).__name__} has no activation modules to guide (it applies them as "
                         f"functions?); guided methods know: {', '.join(k.__name__ for k in GUIDED_ACTIVATIONS)}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def guided_gradients(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dS_c/dI through the guided copy, (B, 3, H, W)."""
    gmodel = model if getattr(model, "_is_guided", False) else guided_copy(model)
    x = images.detach().clone().requires_grad_(True)
    logits = gmodel(x)
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return grad


def _guided(ctx: Context) -> torch.Tensor:
    if "guided" not in ctx.cache:
        gm = ctx.cache.get("guided_model")
        if gm is None:
            gm = guided_copy(ctx.model)
            gm._is_guided = True
            ctx.cache["guided_model"] = gm  # bulk runs hand it to the next batch: one copy per cell
        with torch.enable_grad():
            ctx.cache["guided"] = guided_gradients(gm, ctx.images, ctx.targets)
    return ctx.cache["guided"]


@register
class GuidedBackprop(Method):
    name = "guided_backprop"
    needs_gradients = False

    def raw(self, ctx: Context) -> torch.Tensor:
        return _guided(ctx).abs().amax(1)


@register
class GuidedGradCAM(Method):
    """Guided backpropagation times the upsampled Grad-CAM, as in the slides."""

    name = "guided_gradcam"

    def raw(self, ctx: Context) -> torch.Tensor:
        from .methods import GradCAM

        gradcam = GradCAM().from_context(ctx)  # [0, 1] at input size
        return (_guided(ctx) * gradcam[:, None]).abs().amax(1)
