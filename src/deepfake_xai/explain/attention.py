"""Attention rollout (Abnar & Zuidema 2020) for vision transformers.

Each block's attention A_l (softmax(q k^T / sqrt(d)), averaged over heads) is mixed with the
identity for the residual connection and renormalized, Â_l = rownorm(0.5 A_l + 0.5 I) (their
eq. 1), and the blocks are chained, R = Â_L ... Â_1. The map is R's class-token row over the patch
tokens (the mean row over all tokens for a model without a class token), laid on the patch grid.
Rollout follows where information flows, not what the classifier does with it: it is the same map
for either class. Models without attention blocks (every CNN) get :class:`NotApplicable`.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .base import Context, Method, NotApplicable, register, token_grid


def attention_blocks(model: nn.Module) -> list[nn.Module]:
    """timm's self-attention modules in forward order (those computing softmax(q k^T) explicitly
    when ``fused_attn`` is off, with the probabilities passing through ``attn_drop``)."""
    return [m for m in model.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None),
                                                                                   nn.Module)]


@contextmanager
def recorded_attention(model: nn.Module):
    """Yields a list that fills with each block's attention probabilities (B, heads, N, N) during
    a forward pass: the fused kernel is switched off for the duration (it never forms them)."""
    blocks = attention_blocks(model)
    if not blocks:
        raise NotApplicable(f"{type(model).__name__} has no self-attention blocks (attention rollout is for "
                            "vision transformers)")
    maps: list[torch.Tensor] = []
    fused = [b.fused_attn for b in blocks]
    handles = [b.attn_drop.register_forward_hook(lambda _m, inp, _out: maps.append(inp[0].detach()))
               for b in blocks]
    for b in blocks:
        b.fused_attn = False
    try:
        yield maps
    finally:
        for b, f in zip(blocks, fused, strict=True):
            b.fused_attn = f
        for h in handles:
            h.remove()


def rollout(attentions: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """R = Â_L ... Â_1 with Â_l = rownorm((1 - residual) mean_heads(A_l) + residual I): (B, N, N)."""
    joint = None
    for a in attentions:
        a = a.float().mean(1)
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = (1 - residual) * a + residual * eye
        a = a / a.sum(-1, keepdim=True)
        joint = a if joint is None else a @ joint
    return joint


@register
class AttentionRollout(Method):
    name = "attention_rollout"
    needs_gradients = False
    cam_family = True  # a map on the patch grid, normalized and upsampled like the CAMs

    def raw(self, ctx: Context) -> torch.Tensor:
        model = ctx.model
        with torch.no_grad(), recorded_attention(model) as maps:
            model(ctx.images)
        joint = rollout(maps)
        prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        rows = joint[:, 0] if prefix else joint.mean(1)
        patches = rows[:, prefix:]
        h, w = token_grid(model, patches.shape[1])
        return patches.reshape(len(patches), h, w)
