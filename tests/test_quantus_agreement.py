"""This project's explanation scores against Quantus (Hedström et al. 2023), the field's metric library,
on models and inputs the project was not developed with (timm's regnetx_002 and mobilenetv3_small_050, a small
hand-made CNN; noise and drawn-shape images; random targets):

- pointing game (Zhang et al. 2018) and relevance mass accuracy (Arras et al. 2022; our "energy in
  the region"): exact where the definitions match (no tied maxima, non-negative maps); with tied
  maxima the definitions differ, on purpose, and the test shows how;
- deletion (Petsiuk et al. 2018) against Quantus's RegionPerturbation with matched settings
  (one-pixel patches, every pixel, most relevant first, the removed pixels set to 0 in the model's
  input): the same curve to float rounding;
- cascading model-parameter randomization (Adebayo et al. 2018) against Quantus's MPRT (top-down,
  the same seed, Spearman): the same layers re-initialized to the same weights, the same
  correlations.

The DAG runs this project's batched implementations; these tests keep them honest."""

import numpy as np
import pytest
import torch
from torch import nn

quantus = pytest.importorskip("quantus")

from deepfake_xai.explain import quality as Q  # noqa: E402
from deepfake_xai.explain.bulk import explain_cell  # noqa: E402
from deepfake_xai.models import create_model  # noqa: E402


class ShapesNet(nn.Module):
    """A small CNN of our own: conv-BN-ReLU twice, global pooling, a linear head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 12, 3, padding=1, stride=2), nn.BatchNorm2d(12), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 2))

    def forward(self, x):
        return self.head(self.features(x))


def _model(name: str, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = ShapesNet() if name == "shapes" else create_model(name)
    # BatchNorm statistics of a few forward passes in training mode, so eval-mode outputs are not trivial
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


def _images(kind: str, n: int, size: int, seed: int) -> np.ndarray:
    """(n, 3, size, size) float32: noise, or drawn discs and bars on a noisy ground."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, 3, size, size)).astype(np.float32)
    if kind == "shapes":
        yy, xx = np.mgrid[:size, :size]
        for i in range(n):
            cy, cx, r = rng.integers(4, size - 4, 2).tolist() + [int(rng.integers(2, size // 3))]
            x[i][:, (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] += rng.normal(2, 0.5, 3)[:, None]
            by, bx = rng.integers(0, size - 2, 2)
            x[i, :, by:by + 2, bx:bx + size // 2] -= 2  # a dark bar
    return x


def _softmax_model(model):
    @torch.no_grad()
    def predict(x):
        return torch.softmax(model(x).float(), 1)
    return predict


def _tie_free(maps: np.ndarray) -> np.ndarray:
    """Maps with no two equal values (a tiny ramp), so both libraries sort pixels the same way."""
    ramp = np.arange(maps[0].size, dtype=np.float64).reshape(maps.shape[1:]) * 1e-9
    return (maps.astype(np.float64) + ramp).astype(np.float64)


def _masks(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), bool)
    for i in range(n):
        y, x = rng.integers(0, size // 2, 2)
        h, w = rng.integers(3, size // 2, 2)
        masks[i, y:y + h, x:x + w] = True
    return masks


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pointing_game_and_relevance_mass_equal_quantus(seed):
    n, size = 12, 24
    rng = np.random.default_rng(seed)
    maps = _tie_free(rng.random((n, size, size)) ** 3)
    masks = _masks(n, size, seed)
    x = _images("noise", n, size, seed)
    y = rng.integers(0, 2, n)
    kw = {"abs": False, "normalise": False, "disable_warnings": True}
    pg = quantus.PointingGame(**kw)(model=None, x_batch=x, y_batch=y, a_batch=maps[:, None],
                                      s_batch=masks[:, None].astype(float))
    assert Q.pointing_game(maps, masks).tolist() == [float(v) for v in pg]
    rma = quantus.RelevanceMassAccuracy(**kw)(model=None, x_batch=x, y_batch=y, a_batch=maps[:, None],
                                               s_batch=masks[:, None].astype(float))
    np.testing.assert_allclose(Q.energy_inside(maps, masks), rma, rtol=0, atol=1e-12)


def test_pointing_game_with_tied_maxima_differs_from_quantus_by_definition():
    """A map whose maximum is a plateau half inside the region: Quantus counts a hit when any maximum is
    inside (1.0); this project scores the share of the maxima inside (0.5), so that a flat map scores
    the region's area (chance) instead of a sure hit. That is the only difference."""
    maps = np.zeros((1, 8, 8))
    maps[0, 0, 0:4] = 1.0  # four tied maxima
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 0:2, 0:2] = True  # two of them inside
    pg = quantus.PointingGame(abs=False, normalise=False, disable_warnings=True)(
        model=None, x_batch=np.zeros((1, 3, 8, 8), np.float32), y_batch=np.zeros(1, int), a_batch=maps[:, None],
        s_batch=masks[:, None].astype(float))
    assert float(pg[0]) == 1.0 and Q.pointing_game(maps, masks).tolist() == [0.5]
    flat = np.ones((1, 8, 8))
    assert Q.pointing_game(flat, masks).tolist() == [masks.mean()]


@pytest.mark.parametrize("arch, images, size", [("regnetx_002", "shapes", 16), ("shapes", "noise", 12),
                                                ("mobilenetv3_small_050", "noise", 24)])
def test_deletion_curve_equals_quantus_region_perturbation(arch, images, size):
    model = _model(arch, seed=3)
    x = _images(images, 4, size, seed=4)
    y = np.array([0, 1, 1, 0])
    maps = _tie_free(np.random.default_rng(5).random((4, size, size)))
    ref = quantus.RegionPerturbation(patch_size=1, regions_evaluation=size * size, order="morf",
                                     perturb_baseline=0.0, abs=False, normalise=False, disable_warnings=True)(
        model=model, x_batch=x, y_batch=y, a_batch=maps[:, None], softmax=True, device="cpu",
        channel_first=True)
    ours = Q.perturbation_curve(_softmax_model(model), torch.from_numpy(x), torch.from_numpy(maps),
                                torch.from_numpy(y), steps=size * size, mode="deletion")
    # Quantus records the drop from the unperturbed prediction after each removed pixel
    np.testing.assert_allclose(ours[:, :1] - ours[:, 1:], np.asarray(ref), rtol=0, atol=2e-6)


def _explainer(method: str, layer_name: str, x: np.ndarray, targets: np.ndarray):
    def explain(model):
        maps = explain_cell(model=model, target_layer=dict(model.named_modules())[layer_name],
                            images=torch.from_numpy(x), methods=[method], targets=torch.from_numpy(targets),
                            batch_size=len(x), progress=False)["maps"]
        return {method: maps[method].astype(np.float64)}
    return explain


@pytest.mark.parametrize("arch, layer, method", [("shapes", "features.5", "gradcam"), ("shapes", "features.5", "saliency"),
                                                 ("regnetx_002", "final_conv", "saliency")])
def test_cascading_randomization_equals_quantus_mprt(arch, layer, method):
    model = _model(arch, seed=6)
    size = 32
    x = _images("shapes", 5, size, seed=7)
    y = np.array([1, 0, 1, 1, 0])
    explain = _explainer(method, layer, x, y)
    a = explain(model)[method]
    layers, rho = Q.randomization_cascade(model, explain, seed=11)

    def quantus_explain(model, inputs, targets, **kwargs):
        return _explainer(method, layer, np.asarray(inputs, np.float32), np.asarray(targets))(model)[method][:, None]

    ref = quantus.MPRT(layer_order="top_down", seed=11, similarity_func=quantus.similarity_func.correlation_spearman,
                       abs=False, normalise=False, disable_warnings=True)(
        model=model, x_batch=x, y_batch=y, a_batch=a[:, None], explain_func=quantus_explain, device="cpu",
        channel_first=True, batch_size=len(x))
    assert list(ref)[1:] == layers  # "original" first, then the same layers in the same order
    expected = np.array([ref[name] for name in layers], dtype=float)
    assert np.isfinite(rho[method]).sum() > 0.5 * rho[method].size
    np.testing.assert_allclose(rho[method], expected, rtol=0, atol=1e-6)


def test_layer_groups_follow_blocks():
    names = ["classifier", "bn2", "conv_head", "blocks.1.0.bn1", "blocks.1.0.conv", "blocks.0.0.conv", "bn1",
             "conv_stem"]
    groups = Q.layer_groups(names)
    assert [g for g, _ in groups] == ["head", "blocks.1", "blocks.0", "stem"]
    assert groups[0][1] == ["classifier", "bn2", "conv_head"] and groups[1][1] == ["blocks.1.0.bn1", "blocks.1.0.conv"]
    assert [g for g, _ in Q.layer_groups(["fc", "layer4.1.conv2", "layer4.0.conv1", "layer3.0.conv1", "bn1",
                                          "conv1"])] == ["head", "layer4.1", "layer4.0", "layer3.0", "stem"]
    # numbered children of a container are steps of their own: a VGG's features.N, a Sequential head
    assert [g for g, _ in Q.layer_groups(["head.2", "features.4", "features.0"])] == ["head.2", "features.4",
                                                                                      "features.0"]
    assert [g for g, _ in Q.layer_groups(["head.fc", "pre_logits.fc2", "features.34", "features.0"])] == [
        "head", "features.34", "features.0"]


def test_cascade_tells_a_model_independent_map_from_one_that_explains_the_model():
    """An edge map of the input (what guided backpropagation is accused of showing) keeps a rank correlation
    of 1 however much of the model is random; saliency loses it once the whole model is random."""
    model = _model("shapes", seed=8)
    x = _images("shapes", 6, 24, seed=9)
    y = np.ones(6, int)
    saliency = _explainer("saliency", "features.5", x, y)
    edges = np.abs(np.diff(x.mean(1), axis=1, prepend=0)) + np.abs(np.diff(x.mean(1), axis=2, prepend=0))

    def explain(m):
        return {"edges": edges, **saliency(m)}

    groups = Q.layer_groups(Q.cascade_layers(model))
    steps, rho = Q.randomization_cascade(model, explain, groups, seed=0)
    assert steps == ["head.2", "features.4", "features.3", "features.1", "features.0"]
    assert np.allclose(rho["edges"], 1.0)
    assert np.nanmean(rho["saliency"][-1]) < 0.5
