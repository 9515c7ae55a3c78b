"""The controlled check: on fakes that equal a real twin except inside one known region, scored with
a detector built so that it can only use that region, every score must rank the oracle map first and
the random map last; a score broken on purpose must fail the check."""

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_xai.data.synth import SynthConfig, make_controlled
from deepfake_xai.explain import quality as Q
from deepfake_xai.explain.assess import CONTROLLED_SCORES, assess_controlled, replacement_aucs
from deepfake_xai.explain.catalog import REPLACEMENTS
from deepfake_xai.report.xai import (
    controlled_check,
    controlled_csv,
    controlled_faithfulness,
    controlled_markdown,
    controlled_rows,
    kendall_taus,
    ranking,
    replacements_csv,
    separation,
    separation_markdown,
)
from deepfake_xai.runtime import Runner

SIZE = 48


class CheckerboardDetector(nn.Module):
    """P(fake) from the image's period-2 (checkerboard) component, the generator's fingerprint: a
    stride-2 checkerboard filter answers it with one sign everywhere (noise and content average out),
    and the controlled fakes carry it inside their region only, their real twins nowhere, so the
    region is the whole answer."""

    def __init__(self, threshold: float, gain: float):
        super().__init__()
        k = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])
        self.conv = nn.Conv2d(3, 2, 2, stride=2, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.stack([k.expand(3, 2, 2), -k.expand(3, 2, 2)]) / 3)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 2)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[gain, -gain], [-gain, gain]]) / 2)
            self.fc.bias.copy_(torch.tensor([gain * threshold, -gain * threshold]) / 2)

    def energy(self, x):  # the fingerprint's strength: the mean response of the negative phase
        f = self.pool(self.act(self.conv(x))).flatten(1)
        return f[:, 1] - f[:, 0]

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def controlled():
    cfg = SynthConfig(image_size=SIZE, controlled_region=0.4)
    pairs = [make_controlled(cfg, i) for i in range(24)]
    reals = np.stack([np.asarray(r) for r, _, _ in pairs])
    fakes = np.stack([np.asarray(f) for _, f, _ in pairs])
    boxes = [(b[0] * SIZE, b[1] * SIZE, b[2] * SIZE, b[3] * SIZE) for _, _, b in pairs]
    settings = {"image_size": SIZE, "amp": False, "channels_last": False}
    probe = Runner(CheckerboardDetector(0.0, 1.0), torch.device("cpu"), settings)
    with torch.no_grad():
        e_real = probe.model.energy(probe.inputs(torch.from_numpy(reals)))
        e_fake = probe.model.energy(probe.inputs(torch.from_numpy(fakes)))
    assert float(e_fake.min()) > float(e_real.max())  # the twins are told apart by the region alone
    threshold = float(e_real.max() + e_fake.min()) / 2
    runner = Runner(CheckerboardDetector(threshold, 8.0 / float(e_fake.min() - e_real.max())).eval(),
                    torch.device("cpu"), settings)
    result = assess_controlled(runner=runner, layer=runner.model.act, crops=fakes, boxes=boxes,
                               methods=["gradcam", "saliency", "activation"], steps=8, batch_size=64, twins=reals)
    return {"result": result, "runner": runner, "fakes": fakes, "boxes": boxes}


def test_the_pair_differs_only_inside_its_region():
    real, fake, box = make_controlled(SynthConfig(image_size=SIZE), 3)
    diff = (np.asarray(real) != np.asarray(fake)).any(2)
    ys, xs = np.nonzero(diff)
    x0, y0, x1, y1 = (round(v * SIZE) for v in box)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
    assert diff.mean() > 0.1 and diff.sum() > 0.9 * (x1 - x0) * (y1 - y0)  # the region changed, all of it


def test_scores_rank_the_oracle_first_and_the_random_map_last(controlled):
    result = controlled["result"]
    assert result["n"] == 24 and min(result["p_fake"]) > 0.9  # the detector calls every controlled fake fake
    rows = controlled_rows([{"controlled": result}])
    check = controlled_check(rows)
    for score in ("pointing_game", "energy_in_box", "deletion_auc", "twin_deletion_auc", "twin_insertion_auc"):
        assert check[score]["passed"], (score, check[score])
        assert check[score]["order"][0] == "oracle" and check[score]["order"][-1] == "random"
    # the twin is the real image: with every pixel replaced by it the detector calls it real
    assert max(result["p_fake_twin"]) < 0.1
    by = {r["method"]: r for r in rows}
    assert by["oracle"]["pointing_game"]["mean"] == 1.0
    # the random map's energy in the box is the box's area share, within noise
    assert abs(by["random"]["energy_in_box"]["mean"] - result["box_area_share"]) < 0.03
    md = controlled_markdown(rows, check, result["n"])
    assert "| oracle |" in md and "| random |" in md and "passes" in md
    assert controlled_csv(rows, check).splitlines()[0].startswith("method,pointing_game,pointing_game_ci_low")


def test_a_score_broken_on_purpose_fails_the_check(controlled, monkeypatch):
    """Energy in the box computed on the inverted map (the mistake of reading 1 - map): the oracle
    drops to the bottom and the check says so; the ranking then gives no localization rank."""
    true_energy = Q.energy_inside
    monkeypatch.setattr(Q, "energy_inside", lambda maps, masks: true_energy(1.0 - maps, masks))
    r = controlled["runner"]
    broken = assess_controlled(runner=r, layer=r.model.act, crops=controlled["fakes"], boxes=controlled["boxes"],
                               methods=["gradcam"], steps=4, batch_size=64)
    check = controlled_check(controlled_rows([{"controlled": broken}]))
    assert check["energy_in_box"]["passed"] is False and "better than the oracle" in check["energy_in_box"]["why"]
    assert check["pointing_game"]["passed"]  # the other scores are untouched
    cell = {"methods": {"gradcam": {"energy_in_box": {"mean": 0.5, "n": 3, "ci95": [0.4, 0.6]},
                                    "insertion_auc": {"mean": 0.6, "n": 3, "ci95": [0.5, 0.7]},
                                    "deletion_auc": {"mean": 0.2, "n": 3, "ci95": [0.1, 0.3]},
                                    "sanity": "passes"}}}
    rows = ranking([cell], check)
    assert "localization_rank" not in rows[0] and ("faithfulness_rank" in rows[0]) == bool(
        check["insertion_auc"]["passed"] and check["deletion_auc"]["passed"])


def test_oracle_and_random_maps():
    masks = np.zeros((2, 20, 20), bool)
    masks[:, 5:10, 5:10] = True
    oracle = Q.oracle_maps(masks)
    assert oracle.max() == pytest.approx(1.0) and oracle[0, 7, 7] == pytest.approx(1.0)
    assert oracle[0, 0, 0] < 1e-3 and 0 < oracle[0, 4, 7] < 1  # smoothed at the edge, zero far away
    a, b = Q.random_maps(2, 20, 20, seed=1), Q.random_maps(2, 20, 20, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, Q.random_maps(2, 20, 20, seed=2))


def test_replacements_stand_in_for_removed_pixels_as_documented():
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (3, 24, 24, 3), dtype=np.uint8)
    runner = Runner(nn.Identity(), torch.device("cpu"), {"image_size": 24, "amp": False, "channels_last": False})
    pixels = lambda x: x * runner.normalize.std + runner.normalize.mean  # noqa: E731
    black = pixels(Q.replacement_images(crops, "black", runner.inputs))
    assert torch.allclose(black, torch.zeros_like(black), atol=1e-3)
    mean = pixels(Q.replacement_images(crops, "mean", runner.inputs))
    want = torch.from_numpy(np.rint(crops.mean(axis=(1, 2))).astype(np.float32))
    assert torch.allclose(mean, want[:, :, None, None].expand_as(mean), atol=1e-3)
    jpeg = Q.replacement_images(crops, "jpeg", runner.inputs)
    assert torch.equal(jpeg, runner.inputs(torch.from_numpy(Q.jpeg(crops, Q.JPEG_REPLACEMENT_QUALITY))))
    assert torch.equal(Q.replacement_images(crops, "blur", runner.inputs),
                       Q.blurred(runner.inputs(torch.from_numpy(crops))))
    noise = Q.replacement_images(crops, "noise", runner.inputs, seed=3)
    assert torch.equal(noise, Q.replacement_images(crops, "noise", runner.inputs, seed=3))
    assert not torch.equal(noise, Q.replacement_images(crops, "noise", runner.inputs, seed=4))
    assert torch.allclose(pixels(noise).mean(dim=(2, 3)), torch.from_numpy(crops.mean(axis=(1, 2))).float(), atol=8)
    with pytest.raises(ValueError, match="unknown replacement 'white'"):
        Q.replacement_images(crops, "white", runner.inputs)


def test_each_replacement_is_held_to_the_known_answers(controlled):
    """On the checkerboard detector, replacing the region by anything flat or by the real twin removes the
    fingerprint, so those curves rank the oracle first; every replacement's pair of curves is checked."""
    r = controlled["runner"]
    result = assess_controlled(runner=r, layer=r.model.act, crops=controlled["fakes"], boxes=controlled["boxes"],
                               methods=["gradcam", "saliency", "activation"], steps=8,
                               replacements=REPLACEMENTS)
    assert result["replacements"] == list(REPLACEMENTS)
    rows = controlled_rows([{"controlled": result}])
    check = controlled_check(rows)
    assert set(check) == {*CONTROLLED_SCORES, *(f"{x}_{mode}_auc" for x in REPLACEMENTS
                                                 for mode in ("insertion", "deletion"))}
    for name in ("black", "mean"):
        for mode in ("insertion", "deletion"):
            assert check[f"{name}_{mode}_auc"]["passed"], (name, mode, check[f"{name}_{mode}_auc"])
    md = controlled_markdown(rows, check, result["n"])
    assert "## Removal curves by replacement" in md and "| method | default | black | mean | blur | noise | jpeg |" in md
    csv_text = replacements_csv({"controlled": controlled_faithfulness(rows)})
    assert "controlled,black,oracle," in csv_text and "kendall" in csv_text.splitlines()[0]


def test_kendall_tau_between_replacements():
    same = {"a": {"m1": 0.9, "m2": 0.5, "m3": 0.1}, "b": {"m1": 0.3, "m2": 0.2, "m3": 0.0},
            "c": {"m1": 0.0, "m2": 0.5, "m3": 0.6}}
    taus = {(t["a"], t["b"]): t["tau"] for t in kendall_taus(same)}
    assert taus == {("a", "b"): pytest.approx(1.0), ("a", "c"): pytest.approx(-1.0), ("b", "c"): pytest.approx(-1.0)}
    # one swapped pair of four methods: (6 - 2 * 1) / 6 concordant minus discordant over pairs
    four = {"a": {"m1": 4, "m2": 3, "m3": 2, "m4": 1}, "b": {"m1": 4, "m2": 3, "m3": 1, "m4": 2}}
    assert kendall_taus(four)[0]["tau"] == pytest.approx(4 / 6)


def _cells(scores: dict[str, list], copies: int = 1) -> list[dict]:
    """Explained cells whose controlled parts score the same 40 images (one per model)."""
    ids = [f"img{i}" for i in range(len(next(iter(scores.values()))))]
    return [{"controlled": {"n": len(ids), "image_ids": ids, "methods": {m: {"energy_in_box": list(v)}
                                                                        for m, v in scores.items()}}}
            for _ in range(copies)]


def test_separation_pairs_the_same_images():
    """Two methods whose scores differ by 0.02 on every image, with a spread of 0.3 between images: their
    intervals overlap, but image by image one is always ahead, and the paired interval says so."""
    rng = np.random.default_rng(3)
    base = rng.uniform(0.2, 0.5, 40)
    scores = {name: (base + shift).tolist() for name, shift in
              (("oracle", 0.4), ("gradcam", 0.02), ("saliency", 0.0), ("random", -0.1))}
    rows = controlled_rows(_cells(scores))
    sep = separation(rows, "energy_in_box")
    assert [e["method"] for e in sep] == ["oracle", "gradcam", "saliency", "random"]
    g, s = sep[1], sep[2]
    assert g["score"]["ci95"][0] < s["score"]["ci95"][1]  # unpaired, the intervals overlap
    assert g["separated"] and g["gap"]["mean"] == pytest.approx(0.02)
    assert sep[-1]["gap"] is None and sep[-1]["separated"] is None
    check = controlled_check(rows)
    md = "\n".join(separation_markdown(rows, check, 40))
    assert "3 of 3 neighbours separated; 2 of 2 methods above chance" in md and "| 2 | gradcam |" in md
    vr = sep[2]["vs_random"]  # saliency: 0.1 above random on every image, no spread: separated, no estimate needed
    assert vr["mean"] == pytest.approx(0.1) and vr["separated"] and vr["images_needed"] is None
    noisy = controlled_rows(_cells({"saliency": (base + rng.normal(0.05, 0.2, 40)).tolist(), "random": base}))
    vr = separation(noisy, "energy_in_box")[0]["vs_random"]
    sd = np.std(np.asarray(noisy[1]["energy_in_box"]["values"]) - base, ddof=1)
    assert vr["images_needed"] == int(np.ceil(((1.96 + 0.84) * sd / vr["mean"]) ** 2))


def test_one_image_scored_by_two_models_is_resampled_as_one():
    """Two cells (two models) on the same 40 controlled fakes, scoring them identically: 80 values but
    40 images; the interval is the one image set's, not narrower (counting each image twice would be
    false precision). Values missing for one method are paired on the images both scored."""
    rng = np.random.default_rng(4)
    scores = {"saliency": rng.uniform(0, 1, 40).tolist(), "random": rng.uniform(0, 1, 40).tolist()}
    one, two = controlled_rows(_cells(scores)), controlled_rows(_cells(scores, copies=2))
    assert two[1]["energy_in_box"]["n"] == 80 and two[1]["energy_in_box"]["images"] == 40
    assert two[1]["energy_in_box"]["ci95"] == pytest.approx(one[1]["energy_in_box"]["ci95"], abs=1e-12)
    gap_one = separation(one, "energy_in_box")
    gap_two = separation(two, "energy_in_box")
    assert gap_two[0]["vs_random"]["ci95"] == pytest.approx(gap_one[0]["vs_random"]["ci95"], abs=1e-12)
    holes = dict(scores)
    holes["saliency"] = [None if i == 3 else v for i, v in enumerate(scores["saliency"])]
    holes["random"] = [None if i == 5 else v for i, v in enumerate(scores["random"])]
    gap = separation(controlled_rows(_cells(holes)), "energy_in_box")[0]["gap"]
    assert gap["n"] == 38 and gap["images"] == 38


def test_methods_with_the_same_maps_share_their_curves(controlled):
    """Grad-CAM and HiResCAM coincide under a global-average-pooling head: their removal curves are
    computed once (the same model calls as for one method) and both get them."""
    r = controlled["runner"]
    calls = []

    def predict(x):
        calls.append(len(x))
        with torch.no_grad():
            return torch.softmax(r.model(x), 1)

    images = r.inputs(torch.from_numpy(controlled["fakes"][:6]))
    targets = torch.ones(6, dtype=torch.long)
    maps = Q.random_maps(6, SIZE, SIZE, seed=1)
    other = Q.random_maps(6, SIZE, SIZE, seed=2)
    base = {None: None, "black": Q.replacement_images(controlled["fakes"][:6], "black", r.inputs)}
    two = replacement_aucs(predict, images, {"gradcam": maps, "saliency": other}, targets, 4, base, 64)
    n_two = sum(calls)
    calls.clear()
    three = replacement_aucs(predict, images, {"gradcam": maps, "hirescam": maps.copy(), "saliency": other}, targets,
                             4, base, 64)
    assert sum(calls) == n_two
    assert three["hirescam"] == three["gradcam"] == two["gradcam"] and three["saliency"] == two["saliency"]


def test_only_pairs_the_region_decides_are_scored():
    """A model that calls a controlled fake and its twin both fake (or neither) did not decide by the region:
    those pairs are left out of every controlled score."""
    rng = np.random.default_rng(5)
    cells = _cells({"saliency": rng.uniform(0, 1, 40).tolist(), "random": rng.uniform(0, 1, 40).tolist()})
    decided = [i % 4 != 0 for i in range(40)]
    cells[0]["controlled"]["decided"] = decided
    rows = {r["method"]: r for r in controlled_rows(cells)}
    kept = [v for v, d in zip(cells[0]["controlled"]["methods"]["saliency"]["energy_in_box"], decided) if d]
    assert rows["saliency"]["energy_in_box"]["n"] == 30
    assert rows["saliency"]["energy_in_box"]["mean"] == pytest.approx(np.mean(kept))
