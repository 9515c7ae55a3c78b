"""Activation maximization: an input optimized to maximize one class's logit.

Regularizers, as usual for feature visualization: random jitter (roll) each step, a Gaussian blur
every few steps, and L2 decay of the input. One image per (model, class)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _blur(x: torch.Tensor, sigma: float = 0.6) -> torch.Tensor:
    r = 2
    k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2) / (2 * sigma**2))
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def maximize(model: torch.nn.Module, targets: Sequence[int], size: int, *, steps: int = 96, lr: float = 0.05,
             jitter: int = 2, blur_every: int = 4, decay: float = 1e-3, seed: int = 0,
             device: torch.device | str = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """One optimized (normalized) input per target class, (len(targets), 3, size, size), and the
    target logits per step, (steps, len(targets)).

    All targets are optimized together as one batch: in eval mode each image's gradient depends on
    its own logit only, so this equals separate runs at a fraction of the passes."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    n = len(targets)
    x = (0.1 * torch.randn(n, 3, size, size, generator=g)).to(device).requires_grad_(True)
    rows = torch.arange(n, device=device)
    cols = torch.as_tensor(list(targets), device=device)
    opt = torch.optim.Adam([x], lr=lr)
    trace = []
    for step in range(steps):
        dx, dy = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=g))
        logits = model(torch.roll(x, shifts=(dy, dx), dims=(2, 3)))[rows, cols]
        loss = -logits.sum() + decay * (x**2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        trace.append(logits.detach().float().cpu().numpy())
        if blur_every and (step + 1) % blur_every == 0:
            with torch.no_grad():
                x.copy_(_blur(x))
    return x.detach(), np.stack(trace)


def to_image(x: torch.Tensor, mean, std) -> np.ndarray:
    """A normalized input back to displayable uint8 RGB (percentile-stretched)."""
    img = (x[0].cpu() * torch.tensor(std).view(3, 1, 1) + torch.tensor(mean).view(3, 1, 1)).permute(1, 2, 0)
    lo, hi = torch.quantile(img, 0.01), torch.quantile(img, 0.99)
    return ((img - lo) / (hi - lo + 1e-8)).clamp(0, 1).mul(255).byte().numpy().astype(np.uint8)
