"""Gradient and activation methods computed from one shared forward/backward pass.

Definitions follow the slides (../shared/paper/seed-slides.txt) and, for the CAM family, the
pytorch-grad-cam implementations (tests compare against them).
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Context, Method, NotApplicable, normalize, register, upsample


@register
class Saliency(Method):
    """Simonyan et al.: M_ij = max_c |dS_c / dI_(i,j,c)|."""

    name = "saliency"
    needs_gradients = False
    needs_input_grad = True

    def raw(self, ctx: Context) -> torch.Tensor:
        return ctx.input_grad.abs().amax(1)


@register
class ActivationMap(Method):
    """The target layer's activations, averaged over channels."""

    name = "activation"
    needs_gradients = False
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        if isinstance(ctx.target_layer, nn.LayerNorm):
            # each token's channels are centred and scaled by the norm: their mean is the mean of
            # its bias at every position, a constant map (noise once normalized)
            raise NotApplicable("the target layer is a LayerNorm, whose channel mean is the same at every "
                                "position; set target_layer to a block's output to see its activations")
        return ctx.activations.float().mean(1)


def linear_head(model: nn.Module, features: torch.Tensor,
                logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) of the classifier if the head is global average pooling + one linear layer, checked
    numerically on these features; else :class:`NotApplicable`. With the model's ``logits`` for
    the same images, also that the features are the head's input (a target layer before a
    normalization or activation has the classifier's channel count too, but CAM on it is wrong)."""
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    if not isinstance(clf, nn.Linear) or not hasattr(model, "forward_head"):
        raise NotApplicable("the classifier is not a single linear layer")
    if clf.in_features != features.shape[1]:
        raise NotApplicable(f"the classifier reads {clf.in_features} features, not the target layer's "
                            f"{features.shape[1]} channels (a head between them: not pooling + linear)")
    with torch.no_grad():
        probe = features[:1].float()
        head = model.forward_head(probe)
        pooled = clf(probe.mean((2, 3)))
    if head.shape != pooled.shape or not torch.allclose(head, pooled, rtol=1e-4, atol=1e-4):
        raise NotApplicable("the head is not global average pooling + one linear layer")
    if logits is not None:
        # the head run again on the whole batch's features, as the forward pass ran it (bf16 under
        # autocast when the features are bf16): on the head's input it repeats the same operations
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                             enabled=features.is_cuda and features.dtype == torch.bfloat16):
            again = model.forward_head(features).float()
        ref = logits.float()
        scale = max(float(ref.abs().max()), float(again.abs().max()))
        if again.shape != ref.shape or float((again - ref).abs().max()) > 1e-3 * scale + 1e-7:
            raise NotApplicable("the target layer's output is not what the classifier head reads (layers "
                                "between them); set target_layer to the head's input")
    return clf.weight, clf.bias


@register
class CAM(Method):
    """Zhou et al.: M_c(x, y) = sum_k w_k^c f_k(x, y) (pooling + linear heads only)."""

    name = "cam"
    needs_gradients = False
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        if ctx.tokens:
            raise NotApplicable("the target layer gives tokens and the head reads a class token or pooled "
                                "tokens through a norm: not global average pooling + one linear layer")
        w, _ = linear_head(ctx.model, ctx.activations, ctx.logits)
        return torch.einsum("bkhw,bk->bhw", ctx.activations.float(), w[ctx.targets].float())

    def from_context(self, ctx: Context) -> torch.Tensor:
        # CAM shows the signed evidence for the class: normalized without the ReLU of Grad-CAM.
        return normalize(upsample(normalize(self.raw(ctx)), ctx.size))


@register
class GradCAM(Method):
    """Selvaraju et al.: ReLU(sum_k alpha_k A^k), alpha_k the spatial mean of dy/dA^k."""

    name = "gradcam"
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        alpha = ctx.gradients.float().mean((2, 3), keepdim=True)
        return (alpha * ctx.activations.float()).sum(1)


@register
class GradCAMPlusPlus(Method):
    """Chattopadhay et al. (the closed form pytorch-grad-cam uses)."""

    name = "gradcam++"
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        g, a = ctx.gradients.float(), ctx.activations.float()
        g2, g3 = g**2, g**3
        sum_a = a.sum((2, 3), keepdim=True)
        # Chattopadhay et al., eq. 19; the epsilon is pytorch-grad-cam's (1e-6): where gradients
        # are small it sets the weights, and a different one changes the map by up to 0.04
        aij = g2 / (2 * g2 + sum_a * g3 + 1e-6)
        aij = torch.where(g != 0, aij, torch.zeros_like(aij))
        weights = (torch.relu(g) * aij).sum((2, 3), keepdim=True)
        return (weights * a).sum(1)


@register
class HiResCAM(Method):
    """Draelos & Carin: sum_k (dy/dA^k * A^k), element-wise."""

    name = "hirescam"
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        return (ctx.gradients.float() * ctx.activations.float()).sum(1)


@register
class LayerCAM(Method):
    """Jiang et al.: sum_k ReLU(dy/dA^k) * A^k."""

    name = "layercam"
    cam_family = True

    def raw(self, ctx: Context) -> torch.Tensor:
        return (torch.relu(ctx.gradients.float()) * ctx.activations.float()).sum(1)
