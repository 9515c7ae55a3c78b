"""Guided backpropagation that is right for SiLU/Swish networks too, and Guided Grad-CAM.

Guided backpropagation (Springenberg et al.) passes a gradient back through an activation only
where both the forward input and the incoming gradient are positive. pytorch-grad-cam implements
it by swapping ``nn.ReLU`` modules alone, so on EfficientNet (SiLU) it silently returns the plain
gradient. Here every ReLU and SiLU module of a *copy* of the model is replaced:

- ReLU: grad_in = relu(grad_out) * [x > 0]
- SiLU: grad_in = relu(grad_out) * silu'(x) * [x > 0]   (the same two gates, with SiLU's own slope)
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .base import Context, Method, register


class _GuidedReLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad.clamp(min=0) * (x > 0)


class _GuidedSiLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        slope = s * (1 + x * (1 - s))
        return grad.clamp(min=0) * slope * (x > 0)


class GuidedReLU(nn.Module):
    def forward(self, x):
        return _GuidedReLUFn.apply(x)


class GuidedSiLU(nn.Module):
    def forward(self, x):
        return _GuidedSiLUFn.apply(x)


_SWAPS = {nn.ReLU: GuidedReLU, nn.SiLU: GuidedSiLU}


def guided_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ReLU and SiLU module replaced by its guided version."""
    model = copy.deepcopy(model).eval()
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            for kind, guided in _SWAPS.items():
                if type(child) is kind:
                    setattr(parent, name, guided())
                    swapped += 1
    if swapped == 0:
        raise ValueError("the model has no ReLU or SiLU modules to guide")
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
