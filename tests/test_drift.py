"""Explanation drift under sharing: the geometry that puts the maps of an image and of its resized copy
on one grid, the scores that compare them, and assess_drift on copies that are the original, a
re-compressed original and unrelated images."""

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_xai.data.images import jpeg_roundtrip
from deepfake_xai.explain import quality as Q
from deepfake_xai.explain.assess import assess_drift
from deepfake_xai.runtime import Runner


def _field(box, size):
    """A smooth scene f(x, y) = sin(3x) + cos(5y) + x*y sampled at the pixel centres of ``box``."""
    c = (np.arange(size) + 0.5) / size
    xs = box[0] + c * (box[2] - box[0])
    ys = box[1] + c * (box[3] - box[1])
    return np.sin(3 * xs)[None, :] + np.cos(5 * ys)[:, None] + ys[:, None] * xs[None, :]


def test_the_same_window_comes_back_unchanged():
    maps = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    win = [(0, 0, 1, 1), (0.1, 0.2, 0.6, 0.7), (0.25, 0.25, 0.75, 0.75)]
    np.testing.assert_allclose(Q.align_maps(maps, win, win, 16), maps, atol=1e-6)


def test_maps_of_two_views_meet_on_the_common_part_of_the_scene():
    """The original shows the whole scene at 64 px, the copy (a platform crop/resize) its central part at
    24 px: both resampled over their overlap equal the scene sampled there, to bilinear accuracy."""
    whole, part = (0.0, 0.0, 1.0, 1.0), (0.2, 0.3, 0.9, 0.8)
    original, copy = _field(whole, 64)[None], _field(part, 24)[None]
    common = Q.intersect(whole, part)
    assert common == part
    truth = _field(common, 32)
    a = Q.align_maps(original, [whole], [common], 32)[0]
    b = Q.align_maps(copy, [part], [common], 32)[0]
    assert np.abs(a - truth).max() < 0.02 and np.abs(b - truth).max() < 0.05
    assert Q.spearman(a[None], b[None])[0] > 0.99
    # the wrong geometry (the copy taken to show the whole scene) is caught by the same score
    wrong = Q.align_maps(copy, [whole], [common], 32)[0]
    assert np.abs(wrong - truth).max() > 0.3


def test_input_window_by_hand():
    # TrueFace 1024 px resized to 256, a 224 px input from its centre: 16 px in on each side of 256
    assert Q.input_window(1024, 1024, 256, 256, 224) == pytest.approx((16 / 256, 16 / 256, 240 / 256, 240 / 256))
    # a Facebook copy (720 px) resized to the same 256: the same box of the scene
    assert Q.input_window(720, 720, 256, 256, 224) == pytest.approx((16 / 256,) * 2 + (240 / 256,) * 2)
    # no resize: a 64 px crop of a 100 x 80 image, then a 48 px input
    assert Q.input_window(100, 80, None, 64, 48) == pytest.approx(((18 + 8) / 100, (8 + 8) / 80, (18 + 56) / 100,
                                                                   (8 + 56) / 80))
    # a 45 px copy smaller than the 64 px crop: upscaled to 64 first, so the input covers its centre 48/64
    assert Q.input_window(45, 45, None, 64, 48) == pytest.approx((8 / 64, 8 / 64, 56 / 64, 56 / 64))


def test_input_window_inverts_box_in_crop():
    for w, h, resize, crop, size in [(1024, 1024, 256, 256, 224), (720, 720, 256, 256, 224), (64, 64, None, 64, 64),
                                     (45, 45, None, 64, 48), (800, 600, 300, 280, 256)]:
        win = Q.input_window(w, h, resize, crop, size)
        box = Q.box_in_crop(win, w, h, resize, crop, size)
        assert box == pytest.approx((0, 0, size, size), abs=1e-6)


def test_top_overlap():
    rng = np.random.default_rng(1)
    a = rng.random((50, 20, 20))
    assert np.allclose(Q.top_overlap(a, a), 1.0)
    assert np.allclose(Q.top_overlap(a, -a), 0.0)
    chance = Q.top_overlap(a, rng.random((50, 20, 20)))
    assert abs(chance.mean() - 0.1) < 0.03
    # sparse maps: one hot pixel each, in opposite corners, zero elsewhere. The zeros tie at the cut and are
    # left out (in raster order they would fill the top set alike and give an overlap of 0.9)
    one, other = np.zeros((1, 10, 10)), np.zeros((1, 10, 10))
    one[0, 0, 0], other[0, 9, 9] = 1.0, 1.0
    assert Q.top_overlap(one, other)[0] == 0.0 and Q.top_overlap(one, one)[0] == 1.0
    assert np.isnan(Q.top_overlap(np.zeros((1, 10, 10)), np.zeros((1, 10, 10)))[0])


class Edges(nn.Module):
    """A tiny CNN whose decision rests on local contrast, so its maps follow the image content."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def test_drift_is_nil_for_identical_copies_and_large_for_unrelated_ones():
    rng = np.random.default_rng(2)
    size = 32
    yy, xx = np.mgrid[:size, :size]
    originals = np.zeros((6, size, size, 3), np.uint8)
    for i in range(6):
        cy, cx = rng.integers(6, size - 6, 2)
        originals[i] = 40 + 150 * (((yy - cy) ** 2 + (xx - cx) ** 2) < 30)[..., None] + rng.integers(0, 20, (size, size, 3))
    unrelated = rng.integers(0, 255, originals.shape, dtype=np.uint8)
    recompressed = np.stack([jpeg_roundtrip(o, 40) for o in originals])
    runner = Runner(Edges().eval(), torch.device("cpu"), {"image_size": size, "amp": False, "channels_last": False})
    full = [(0.0, 0.0, 1.0, 1.0)] * 6
    idx = np.arange(6)
    out = assess_drift(runner=runner, layer=runner.model.act, originals=originals, windows=full,
                       copies={"facebook": (originals.copy(), idx, full), "telegram": (recompressed, idx, full),
                               "twitter": (unrelated, idx, full)},
                       methods=["gradcam", "saliency"])
    assert out["n"] == 6 and out["pairs"] == {"facebook": 6, "telegram": 6, "twitter": 6}
    for m in ("gradcam", "saliency"):
        same, jpeg, other = (out["methods"][m][p]["spearman"]["mean"] for p in ("facebook", "telegram", "twitter"))
        assert same == pytest.approx(1.0, abs=1e-6)
        assert out["methods"][m]["facebook"]["top10_overlap"]["mean"] == pytest.approx(1.0)
        assert other < jpeg < same, (m, same, jpeg, other)
        assert out["methods"][m]["twitter"]["spearman"]["n"] == 6
