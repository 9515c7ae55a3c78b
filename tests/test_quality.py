"""Explanation-quality metrics on cases with a known answer: a map equal to the evidence region
scores the maximum, a random map scores near chance, the sanity check tells a weight-dependent map
from a weight-independent one."""

import numpy as np
import pytest
import torch

from deepfake_xai.explain import quality as Q

H = W = 16
BOX = (4.0, 4.0, 8.0, 8.0)  # pixel coordinates: a 4 x 4 region


def region():
    return Q.box_mask(BOX, H, W)


def test_box_mask_and_crop_geometry():
    m = region()
    assert m.sum() == 16 and m[4:8, 4:8].all()
    # native 64 px, no resize, centre crop 64, model crop 32: the box moves by 16 px
    assert Q.box_in_crop((0.5, 0.5, 0.75, 0.75), 64, 64, None, 64, 32) == (16.0, 16.0, 32.0, 32.0)
    # resize 1024 -> 256 keeps normalized coordinates; a box outside the crop is None
    assert Q.box_in_crop((0.0, 0.0, 0.5, 0.5), 1024, 1024, 256, 256, 256) == (0.0, 0.0, 128.0, 128.0)
    assert Q.box_in_crop((0.0, 0.0, 0.1, 0.1), 64, 64, None, 64, 32) is None
    # an image smaller than the crop is upscaled by the cache (48 -> 64): the box scales with it
    assert Q.box_in_crop((0.5, 0.5, 0.75, 0.75), 48, 48, None, 64, 64) == (32.0, 32.0, 48.0, 48.0)
    assert Q.box_in_crop((np.nan,) * 4, 64, 64, None, 64, 32) is None


def test_localization_maximal_for_the_region_and_chance_for_random_maps():
    masks = np.repeat(region()[None], 200, axis=0)
    perfect = masks.astype(float)
    assert Q.pointing_game(perfect[:1], masks[:1])[0] == 1.0
    assert Q.energy_inside(perfect[:1], masks[:1])[0] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noise = rng.random((200, H, W))
    area = region().mean()  # 16 / 256
    assert Q.pointing_game(noise, masks).mean() == pytest.approx(area, abs=0.04)
    assert Q.energy_inside(noise, masks).mean() == pytest.approx(area, abs=0.01)
    flat = np.zeros((1, H, W))
    assert Q.energy_inside(flat, masks[:1])[0] == pytest.approx(area)  # an empty map gets the area share
    assert Q.pointing_game(flat, masks[:1])[0] == pytest.approx(area)  # ties everywhere: chance, not a hit


class RegionModel(torch.nn.Module):
    """A 'detector' whose fake logit grows with the region's brightness: only the region matters."""

    def forward(self, x):
        r = x[:, :, 4:8, 4:8].mean(dim=(1, 2, 3))
        return torch.stack([-3 * (r - 0.6), 3 * (r - 0.6)], dim=1)


def bright_region_images(n: int) -> torch.Tensor:
    """Dim noise with a bright region: blurring or zeroing the region lowers P(fake)."""
    x = 0.2 * torch.rand(n, 3, H, W)
    x[:, :, 4:8, 4:8] = 1.0
    return x


def test_deletion_and_insertion_reward_the_true_region():
    model = RegionModel()
    torch.manual_seed(0)
    images = bright_region_images(8)
    targets = torch.ones(8, dtype=torch.long)
    predict = lambda x: torch.softmax(model(x), 1)  # noqa: E731
    truth = torch.from_numpy(np.repeat(region()[None], 8, axis=0).astype(np.float32))
    random = torch.rand(8, H, W)
    d_true = Q.curve_auc(Q.perturbation_curve(predict, images, truth, targets, 16, "deletion"))
    d_rand = Q.curve_auc(Q.perturbation_curve(predict, images, random, targets, 16, "deletion"))
    assert d_true.mean() < d_rand.mean() - 0.1
    curve = Q.perturbation_curve(predict, images, truth, targets, 16, "deletion")
    assert curve[:, 1:].max() == pytest.approx(curve[:, -1].max(), abs=1e-6)  # the region is gone after step 1
    i_true = Q.curve_auc(Q.perturbation_curve(predict, images, truth, targets, 16, "insertion"))
    i_rand = Q.curve_auc(Q.perturbation_curve(predict, images, random, targets, 16, "insertion"))
    assert i_true.mean() > i_rand.mean() + 0.05
    for mode in ("deletion", "insertion"):  # the shared ends give the same curves as computing them
        for maps in (truth, random):
            shared = Q.perturbation_curve(predict, images, maps, targets, 16, mode,
                                          ends=Q.curve_ends(predict, images, targets, mode))
            assert np.allclose(shared, Q.perturbation_curve(predict, images, maps, targets, 16, mode), atol=1e-6)
    kept_true = Q.keep_top_confidence(predict, images, truth, targets, keep=16 / 256)
    kept_rand = Q.keep_top_confidence(predict, images, random, targets, keep=16 / 256)
    full = predict(images)[:, 1].numpy()
    assert np.allclose(kept_true, full, atol=1e-6) and kept_rand.mean() < full.mean()


def test_perturbation_curve_images_follow_the_definition_one_batch_at_a_time():
    """Step s of a deletion curve zeroes the round(s * HW / steps) most salient pixels; the model sees
    at most ``batch_size`` perturbed images at once (all n * steps copies need never be in memory)."""
    torch.manual_seed(1)
    n, steps, batch_size = 3, 4, 5
    images, maps = torch.rand(n, 3, H, W) + 0.1, torch.rand(n, H, W)
    seen = []

    def predict(x):
        seen.append(x.clone())
        p = x.mean(dim=(1, 2, 3))
        return torch.stack([1 - p, p], 1)

    curve = Q.perturbation_curve(predict, images, maps, torch.ones(n, dtype=torch.long), steps, "deletion",
                                 batch_size)
    assert max(len(b) for b in seen) <= batch_size
    batches = torch.cat(seen)
    assert curve.shape == (n, steps + 1) and len(batches) == n * (steps + 1)
    for i in range(n):
        top = torch.argsort(maps[i].flatten(), descending=True)
        for s in range(steps + 1):
            expected = images[i].clone().flatten(1)
            expected[:, top[:round(s * H * W / steps)]] = 0
            assert torch.equal(batches[i * (steps + 1) + s], expected.view(3, H, W)), (i, s)
            assert curve[i, s] == pytest.approx(float(expected.mean()), abs=1e-6)


def test_road_ranks_the_true_region_above_its_inverse():
    model = RegionModel().eval()
    torch.manual_seed(0)
    images = bright_region_images(4)
    truth = np.repeat(region()[None], 4, axis=0).astype(np.float32)
    predict = lambda x: torch.softmax(model(x), 1)  # noqa: E731
    good = Q.road_scores(predict, images, truth, [1] * 4, [50])
    bad = Q.road_scores(predict, images, 1 - truth, [1] * 4, [50])
    assert good.mean() > bad.mean()


def test_road_equals_pytorch_grad_cams_road_combined():
    """Same imputation noise (same seed, same order), so the same scores, with fewer forward passes."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    model = RegionModel().eval()
    torch.manual_seed(0)
    images = bright_region_images(5)
    maps = np.random.default_rng(2).random((5, H, W)).astype(np.float32)
    targets = [1, 0, 1, 1, 0]
    torch.manual_seed(7)
    theirs = ROADCombined(percentiles=[20, 50, 80])(images, maps, [ClassifierOutputSoftmaxTarget(t) for t in targets],
                                                     model)
    torch.manual_seed(7)
    ours = Q.road_scores(lambda x: torch.softmax(model(x), 1), images, maps, targets, [20, 50, 80], batch_size=4)
    assert ours.shape == (5,) and np.abs(ours).max() > 1e-3
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_sanity_statistics():
    rng = np.random.default_rng(1)
    a = rng.random((50, H, W))
    assert np.allclose(Q.spearman(a, a), 1.0) and np.allclose(Q.ssim(a, a), 1.0)
    assert abs(Q.spearman(a, rng.random((50, H, W))).mean()) < 0.05
    assert Q.ssim(a, rng.random((50, H, W))).mean() < 0.2
    assert np.allclose(Q.spearman(a, 2 * a + 1), 1.0)  # rank correlation ignores scale


def test_randomized_copy_changes_every_layer_and_leaves_the_model_alone():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2))
    before = [p.clone() for p in model.parameters()]
    twin = Q.randomized_copy(model, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    conv_w = dict(twin.named_parameters())["0.weight"]
    assert not torch.equal(conv_w, before[0])


def test_upsampling_fingerprint_shows_at_nyquist():
    rng = np.random.default_rng(0)
    smooth = np.clip(rng.normal(128, 10, (20, 32, 32, 3)), 0, 255).astype(np.uint8)
    checker = smooth.astype(int) + 20 * ((np.indices((32, 32)).sum(0) % 2)[None, :, :, None])
    s0 = Q.mean_log_spectrum(smooth)
    s1 = Q.mean_log_spectrum(np.clip(checker, 0, 255).astype(np.uint8))
    assert s1[0, 0] - s0[0, 0] > 3  # fftshift puts the (Nyquist, Nyquist) frequency at [0, 0]
    assert abs(s1[16, 8] - s0[16, 8]) < 1


def test_jpeg_and_rescale_keep_shape_and_degrade_with_strength():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    for out in (Q.jpeg(img, 90), Q.jpeg(img, 30), Q.rescale(img, 0.5), Q.rescale(img, 1.5)):
        assert out.shape == img.shape and out.dtype == np.uint8
    err = lambda x: np.abs(x.astype(int) - img).mean()  # noqa: E731
    assert err(Q.jpeg(img, 95)) < err(Q.jpeg(img, 30))
    assert err(Q.rescale(img, 0.75)) < err(Q.rescale(img, 0.25))


def test_mean_ci_and_bootstrap():
    v = np.r_[np.zeros(50), np.ones(50)]
    out = Q.mean_ci(v)
    assert out["mean"] == 0.5 and out["n"] == 100 and out["ci95"][0] < 0.5 < out["ci95"][1]
    assert Q.mean_ci([0.3])["ci95"] is None


class PoolToOne(torch.nn.Module):
    """A small CNN whose target layer ends in a 1 x 1 feature map (as vgg19 on 32 px inputs)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
        self.squeeze = torch.nn.AdaptiveAvgPool2d(1)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.squeeze(self.body(x)).flatten(1))


def _explained_pool_to_one(methods, targets="predicted"):
    """PoolToOne (seeded), its runner, 6 random crops and their maps from the bulk path."""
    from deepfake_xai.explain.bulk import explain_cell
    from deepfake_xai.runtime import Runner

    torch.manual_seed(0)
    model = PoolToOne().eval()
    runner = Runner(model, torch.device("cpu"), {"image_size": H})
    crops = (255 * torch.rand(6, H, W, 3)).to(torch.uint8).numpy()
    made = explain_cell(model=model, target_layer=model.squeeze, images=runner.inputs(torch.from_numpy(crops)),
                        methods=methods, targets=targets, progress=False)
    return model, runner, crops, made


def _cell(crops, made) -> dict:
    """A read maps file for the 6 explained crops (labels alternate real, fake)."""
    return {"image_ids": [str(i) for i in range(6)], "crops": crops, "maps": made["maps"],
            "targets": made["targets"], "labels": np.array([0, 1] * 3), "info": {}}


def test_flat_maps_are_reported_not_scored():
    """CAM-family maps from a 1 x 1 feature map are constant: they get no faithfulness or
    localization score (deleting "their" top pixels would delete in raster order); saliency is scored."""
    from deepfake_xai.explain.assess import assess_cell

    model, runner, crops, made = _explained_pool_to_one(["gradcam", "saliency"])
    cell = _cell(crops, made)
    boxes = [None, (4, 4, 8, 8)] * 3
    res = assess_cell(runner=runner, layer=model.squeeze, cell=cell, boxes=boxes, settings={}, n_images=6, steps=4,
                      keep=0.2, road_percentiles=[50])
    grad, sal = res["methods"]["gradcam"], res["methods"]["saliency"]
    assert grad["flat_maps"] and grad["sanity"] == "undetermined (flat maps)"
    assert grad["deletion_auc"] is None and grad["road"] is None and grad["energy_in_box"] is None
    assert not sal["flat_maps"] and 0 <= sal["deletion_auc"]["mean"] <= 1 and sal["energy_in_box"]["n"] == 3
    assert len(sal["deletion_curve"]) == 5 and sal["sanity"] in ("passes", "fails")


def test_flat_maps_of_single_images_are_left_out_and_counted():
    """A method whose map is flat for some images only (a CAM a ReLU zeroed) is scored on its other
    images: exactly the scores of a cell without the flat ones."""
    from deepfake_xai.explain.assess import assess_cell

    model, runner, crops, made = _explained_pool_to_one(["saliency"])
    maps = made["maps"]["saliency"].copy()
    maps[[0, 3]] = 0
    labels, boxes = np.array([0, 1] * 3), [None, (4, 4, 8, 8)] * 3

    def assess(keep_rows):
        cell = {"image_ids": [str(i) for i in keep_rows], "crops": crops[keep_rows],
                "maps": {"saliency": maps[keep_rows]}, "targets": made["targets"][keep_rows],
                "labels": labels[keep_rows], "info": {}}
        return assess_cell(runner=runner, layer=model.squeeze, cell=cell, boxes=[boxes[i] for i in keep_rows],
                           settings={}, n_images=len(keep_rows), steps=4, keep=0.2,
                           road_percentiles=[50])["methods"]["saliency"]

    mixed, clean = assess([0, 1, 2, 3, 4, 5]), assess([1, 2, 4, 5])
    assert mixed["flat_images"] == 2 and clean["flat_images"] == 0 and not mixed["flat_maps"]
    assert mixed["energy_in_box"]["n"] == 2 and mixed["deletion_auc"]["n"] == 4
    for key in ("deletion_auc", "insertion_auc", "road", "energy_in_box", "pointing_game", "confidence_drop"):
        assert mixed[key]["mean"] == pytest.approx(clean[key]["mean"], abs=1e-6), key
    assert mixed["sanity"] == clean["sanity"]


def test_flat_maps_of_the_randomized_model_are_left_out_of_the_sanity_check(monkeypatch):
    """Randomized-model maps identical to the trained model's (the method ignores the weights) but
    flat for 4 of 6 images: those 4 have no rank order and are left out, so the check fails, as it
    must; scoring them as uncorrelated (rho 0) would have made it pass."""
    from deepfake_xai.explain import assess

    model, runner, crops, made = _explained_pool_to_one(["saliency"])
    copied = made["maps"]["saliency"].copy()
    copied[:4] = 0

    def randomized_maps(**kwargs):
        return {"maps": {"saliency": copied}}

    monkeypatch.setattr(assess, "explain_cell", randomized_maps)
    cell = _cell(crops, made)
    res = assess.assess_cell(runner=runner, layer=model.squeeze, cell=cell, boxes=[None] * 6, settings={},
                             n_images=6, steps=2, keep=0.2, road_percentiles=[])["methods"]["saliency"]
    assert res["sanity_flat_random"] == 4 and res["sanity_spearman"]["n"] == 2
    assert res["sanity_spearman"]["mean"] == pytest.approx(1.0) and res["sanity"] == "fails"


def test_sanity_maps_of_the_randomized_model_explain_the_trained_models_classes(monkeypatch):
    """Adebayo et al. compare maps of the same image for the same class: the randomized model is
    explained for the cell's targets, not for whatever it predicts itself."""
    from deepfake_xai.explain import assess
    from deepfake_xai.explain.bulk import explain_cell

    targets = torch.tensor([1, 1, 0, 1, 0, 0])  # as with explain.target or the trained model's predictions
    model, runner, crops, made = _explained_pool_to_one(["saliency", "gradcam"], targets)
    assert list(made["targets"]) == targets.tolist()
    seen = []

    def spy(**kwargs):
        t = kwargs["targets"]
        seen.append(t if isinstance(t, str) else torch.as_tensor(t).tolist())
        return explain_cell(**kwargs)

    monkeypatch.setattr(assess, "explain_cell", spy)
    cell = _cell(crops, made)
    assess.assess_cell(runner=runner, layer=model.squeeze, cell=cell, boxes=[None] * 6, settings={}, n_images=6,
                       steps=2, keep=0.2, road_percentiles=[])
    assert seen == [targets.tolist()]


def test_robustness_accuracy_uses_the_decision_threshold():
    from deepfake_xai.explain.assess import robustness
    from deepfake_xai.runtime import Runner

    runner = Runner(PoolToOne().eval(), torch.device("cpu"), {"image_size": H})
    crops = np.zeros((8, H, W, 3), np.uint8)
    labels = np.array([1, 1, 1, 0, 0, 0, 0, 0])

    def predict(x):  # P(fake) = 0.6 for every image
        return torch.tensor([[0.4, 0.6]]).repeat(len(x), 1)

    assert robustness(predict, runner, crops, labels, [], [])["clean"] == 3 / 8  # 0.6 >= 0.5: all "fake"
    assert robustness(predict, runner, crops, labels, [], [], threshold=0.7)["clean"] == 5 / 8  # all "real"


class _FirstPrediction(Exception):
    """Raised by the test's model at the first prediction: every tensor operation before it ran."""


@pytest.mark.parametrize("score", ["deletion", "insertion", "keep_top"])
def test_maps_read_on_the_cpu_meet_images_on_a_gpu(score):
    """assess_cell passes maps read from disk (CPU) with images on the model's device. The image
    batch here is on a simulated CUDA device (FakeTensorMode checks device rules and computes
    nothing, so no GPU is needed): mixing the devices raises there as it does on a real GPU."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    maps, targets = torch.rand(3, 8, 8), torch.tensor([0, 1, 0])
    seen = []

    def predict(x):
        seen.append(x.device.type)
        raise _FirstPrediction

    with FakeTensorMode(allow_non_fake_inputs=True):
        images = torch.empty(3, 3, 8, 8, device="cuda")
        with pytest.raises(_FirstPrediction):
            if score == "keep_top":
                Q.keep_top_confidence(predict, images, maps, targets)
            else:
                Q.perturbation_curve(predict, images, maps, targets, 4, score, 8, ends=(np.zeros(3), np.ones(3)))
    assert seen == ["cuda"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_quality_scores_on_a_gpu_equal_the_cpus(device="cuda"):
    from deepfake_xai.explain.assess import assess_cell
    from deepfake_xai.runtime import Runner

    model, runner, crops, made = _explained_pool_to_one(["saliency"])
    cell = _cell(crops, made)
    kwargs = dict(layer=model.squeeze, cell=cell, boxes=[None, (4, 4, 8, 8)] * 3, settings={}, n_images=6,
                  steps=4, keep=0.2, road_percentiles=[50], test_crops=crops, test_labels=np.array([0, 1] * 3),
                  jpeg_qualities=[50], scales=[0.5])
    on_cpu = assess_cell(runner=runner, **kwargs)
    on_gpu = assess_cell(runner=Runner(model, torch.device(device), {"image_size": H, "amp": False}), **kwargs)
    sal_cpu, sal_gpu = on_cpu["methods"]["saliency"], on_gpu["methods"]["saliency"]
    for key in ("deletion_auc", "insertion_auc", "confidence_keep20", "road", "energy_in_box"):
        assert sal_gpu[key]["mean"] == pytest.approx(sal_cpu[key]["mean"], abs=1e-4), key
    # (the sanity check's randomized model draws from the device's generator: not compared)
    assert on_gpu["robustness"]["n"] == on_cpu["robustness"]["n"] == 6
    for kind in ("jpeg", "scale"):  # accuracies on 6 images: at most one prediction may cross the threshold
        for key, acc in on_cpu["robustness"][kind].items():
            assert abs(on_gpu["robustness"][kind][key] - acc) <= 1 / 6 + 1e-9, (kind, key)


def test_the_robustness_subset_is_seeded_sorted_and_a_fixed_point():
    """xai-cell reads only the subset's images and passes the same size on; assess_cell's own pick on
    them must then keep all of them, in order, so the scores are those of the whole-set path."""
    from deepfake_xai.explain.assess import robustness_subset

    pick = robustness_subset(1000, 64, seed=3)
    assert len(pick) == 64 and np.all(np.diff(pick) > 0) and np.array_equal(pick, robustness_subset(1000, 64, 3))
    assert not np.array_equal(pick, robustness_subset(1000, 64, 4))
    assert np.array_equal(robustness_subset(64, 64, 3), np.arange(64))
    for k in (0, None, 2000):
        assert np.array_equal(robustness_subset(1000, k, 3), np.arange(1000))


@pytest.mark.parametrize("k", [0, 6, 4])
def test_robustness_takes_the_test_crops_without_a_copy_unless_it_subsets_them(monkeypatch, k):
    """With robustness on every test image (TrueFace's combined set: 8 GB of crops) the array is
    passed on as it is; only a real subset is indexed (and so copied)."""
    from deepfake_xai.explain import assess

    model, runner, crops, made = _explained_pool_to_one(["saliency"])
    cell = _cell(crops, made)
    got = []
    monkeypatch.setattr(assess, "robustness", lambda predict, runner, c, labels, *a: got.append((c, labels)) or {})
    assess.assess_cell(runner=runner, layer=model.squeeze, cell=cell, boxes=[None] * 6, settings={}, n_images=6,
                       steps=4, keep=0.2, road_percentiles=[], test_crops=crops, test_labels=np.array([0, 1] * 3),
                       robustness_images=k)
    (c, labels), = got
    if k in (0, 6):
        assert c is crops
    else:
        pick = assess.robustness_subset(6, 4, 0)
        assert np.array_equal(c, crops[pick]) and np.array_equal(labels, np.array([0, 1] * 3)[pick])
