"""Explanation methods against independent references (pytorch-grad-cam, captum) and the
identities in the slides; the bulk path, sampling, activation maximization, the CLI."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from deepfake_xai.explain import METHODS, Context, NotApplicable, get_method
from deepfake_xai.explain.bulk import explain_cell, read_maps, select_sample, write_maps
from deepfake_xai.explain.guided import Guided, guided_copy, guided_gradients
from deepfake_xai.models import create_model, get_module


def _model(arch, layer, seed=0):
    torch.manual_seed(seed)
    m = create_model(arch).eval()
    return m, get_module(m, layer)


def _batch(n=4, size=64, seed=1):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch, layer", [("efficientnet_b0", "bn2"), ("resnet18", "layer4")])
def test_bulk_gradcam_equals_pytorch_grad_cam(arch, layer):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, tl = _model(arch, layer)
    x, t = _batch(), torch.tensor([0, 1, 1, 0])
    mine = get_method("gradcam")(model, x, t, tl)
    with GradCAM(model=model, target_layers=[tl]) as cam:
        ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
    assert mine.shape == ref.shape == (4, 64, 64)
    assert float((mine - torch.from_numpy(ref)).abs().max()) <= 1e-4


def test_saliency_equals_captum():
    from captum.attr import Saliency

    model, tl = _model("efficientnet_b0", "bn2")
    x, t = _batch(), torch.tensor([1, 0, 1, 1])
    ref = Saliency(model).attribute(x.clone().requires_grad_(True), target=t, abs=True).amax(1)
    lo = ref.flatten(1).min(1).values.view(-1, 1, 1)
    ref = (ref - lo) / ((ref - lo).flatten(1).max(1).values.view(-1, 1, 1) + 1e-7)
    assert torch.allclose(get_method("saliency")(model, x, t, tl), ref, atol=1e-5)


@pytest.mark.parametrize("arch, layer", [("resnet18", "layer4"), ("efficientnet_b0", "bn2"),
                                         ("densenet121", "features.norm5")])
def test_cam_identity_and_gradcam_is_relu_cam_up_to_scale(arch, layer):
    model, tl = _model(arch, layer)
    x = _batch()
    for c in (0, 1):
        t = torch.full((4,), c)
        ctx = Context.capture(model, x, t, tl)
        cam = get_method("cam").raw(ctx)
        bias = model.get_classifier().bias[c]
        # the slides: S_c = sum_xy M_c(x, y) (with average pooling: the mean, plus the bias)
        assert torch.allclose(cam.mean((1, 2)) + bias, ctx.logits[:, c], atol=1e-4)
        grad = get_method("gradcam").raw(ctx)
        z = cam.shape[1] * cam.shape[2]
        assert torch.allclose(torch.relu(grad) * z, torch.relu(cam), atol=1e-4)
        assert torch.allclose(get_method("gradcam").from_context(ctx), _norm_up(torch.relu(cam), ctx.size), atol=1e-5)


def _norm_up(m, size):
    from deepfake_xai.explain.base import normalize, upsample

    return normalize(upsample(normalize(m), size))


def test_cam_is_not_applicable_to_vgg19_and_the_bulk_output_says_so():
    model, tl = _model("vgg19", "features.36")
    x = _batch(2, 32)
    with pytest.raises(NotApplicable, match="not pooling"):
        get_method("cam")(model, x, torch.tensor([0, 1]), tl)
    res = explain_cell(model=model, target_layer=tl, images=x, methods=["cam", "gradcam"], progress=False)
    assert "cam" in res["not_applicable"] and "cam" not in res["maps"] and res["maps"]["gradcam"].shape == (2, 32, 32)


def test_cam_on_a_layer_before_the_heads_input_is_not_applicable():
    """EfficientNet's conv_head has the classifier's 1280 channels but bn2 + SiLU follow it: CAM
    there would not be Zhou's CAM, so it says so; on bn2 (the head's input) it applies."""
    model, conv_head = _model("efficientnet_b0", "conv_head")
    x = _batch(2, 64)
    with pytest.raises(NotApplicable, match="not what the classifier head reads"):
        get_method("cam")(model, x, torch.tensor([0, 1]), conv_head)
    assert get_method("cam")(model, x, torch.tensor([0, 1]), get_module(model, "bn2")).shape == (2, 64, 64)


def test_a_bulk_batch_costs_one_forward_pass_and_explains_the_predicted_class():
    """The target class comes from the capture's own forward pass: one pass per batch, and each map
    equals the single-method call for the class the model predicts."""
    model, tl = _model("efficientnet_b0", "bn2")
    x = _batch(6)
    passes = []
    handle = model.register_forward_hook(lambda m, i, o: passes.append(len(i[0])))
    try:
        res = explain_cell(model=model, target_layer=tl, images=x, methods=["gradcam", "layercam"], batch_size=4,
                           progress=False)
    finally:
        handle.remove()
    assert passes == [4, 2]
    with torch.no_grad():
        probs = torch.softmax(model(x), 1)[:, 1].numpy()
    predicted = (probs >= 0.5).astype(int)
    assert np.allclose(res["probs"], probs, atol=1e-6) and list(res["targets"]) == list(predicted)
    for name in ("gradcam", "layercam"):
        one = get_method(name)(model, x, torch.from_numpy(predicted), tl)
        assert np.allclose(res["maps"][name], one.numpy(), atol=1e-3)  # float16 storage
    # "predicted" follows the metrics' decision threshold (evaluate.threshold), not a fixed 0.5
    threshold = float(np.median(probs))
    moved = explain_cell(model=model, target_layer=tl, images=x, methods=["gradcam"], batch_size=4, progress=False,
                         threshold=threshold)
    assert list(moved["targets"]) == list((probs >= threshold).astype(int))
    assert 0 < moved["targets"].sum() < len(x)


class ReLUNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                                  nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, x):
        return self.body(x)


def test_guided_backprop_equals_captum_on_a_relu_model():
    from captum.attr import GuidedBackprop

    torch.manual_seed(0)
    model = ReLUNet().eval()
    x, t = _batch(3, 16), torch.tensor([1, 0, 1])
    ref = GuidedBackprop(model).attribute(x.clone().requires_grad_(True), target=t)
    mine = guided_gradients(model, x, t)
    assert float(ref.abs().max()) > 0
    assert float((mine - ref).abs().max()) <= 1e-5 * float(ref.abs().max())


def test_guided_backprop_on_silu_is_not_the_plain_gradient():
    from pytorch_grad_cam import GuidedBackpropReLUModel

    model, _ = _model("efficientnet_b0", "bn2")
    x, t = _batch(2), torch.tensor([1, 1])
    xg = x.clone().requires_grad_(True)
    plain = torch.autograd.grad(model(xg).gather(1, t[:, None]).sum(), xg)[0]
    guided = guided_gradients(model, x, t)
    scale = float(plain.abs().max())
    assert scale > 0 and float(guided.abs().max()) > 0
    assert float((guided - plain).abs().max()) > 0.1 * scale  # really different, not rounding
    # pytorch-grad-cam swaps nn.ReLU only: on this SiLU network it returns the plain gradient
    ref = GuidedBackpropReLUModel(model, device="cpu")(x[:1], target_category=1)  # (H, W, 3)
    assert np.abs(ref - plain[0].permute(1, 2, 0).numpy()).max() < 1e-4 * scale
    # the model itself is untouched (the guided version is a copy)
    assert any(type(m) is nn.SiLU for m in model.modules())
    copy = guided_copy(model)  # every activation of the copy sits inside a guided wrapper
    inner = [m.activation for m in copy.modules() if isinstance(m, Guided)]
    assert inner and {id(m) for m in copy.modules() if type(m) in (nn.SiLU, nn.ReLU)} == {id(m) for m in inner}


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"scorecam"}))
def test_every_method_gives_one_map_in_unit_range_per_image(name):
    model, tl = _model("mnasnet_100", "bn2")
    if name == "attention_rollout":  # for transformers only (NotApplicable on a CNN: test_explain_references)
        torch.manual_seed(0)
        model = create_model("vit_tiny_patch16_224", model_args={"img_size": 32, "patch_size": 8, "depth": 2}).eval()
        tl = get_module(model, "blocks.1.norm1")
    maps = get_method(name)(model, _batch(3, 32), torch.tensor([0, 1, 1]), tl)
    assert maps.shape == (3, 32, 32)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1 + 1e-6


def test_sample_is_balanced_includes_mistakes_and_shares_its_first_images():
    rng = np.random.default_rng(0)
    ids = np.array([f"img{i:03d}" for i in range(200)])
    labels = rng.integers(0, 2, 200)
    a = {"image_id": ids, "label": labels, "prob": np.clip(labels * 0.8 + rng.normal(0, 0.3, 200), 0, 1)}
    b = {"image_id": ids, "label": labels, "prob": rng.uniform(0, 1, 200)}  # another model
    sa, sb = select_sample(a, 16, 4, seed=0), select_sample(b, 16, 4, seed=0)
    assert len(sa) == len(set(sa)) == 16 and sa[:4] == sb[:4]
    lab = dict(zip(ids, labels))
    assert sum(lab[i] for i in sa) == 8
    wrong = [i for i in sa if (a["prob"][list(ids).index(i)] >= 0.5) != lab[i]]
    assert len(wrong) >= 4


def test_maps_file_round_trip(tmp_path):
    model, tl = _model("mnasnet_100", "bn2")
    res = explain_cell(model=model, target_layer=tl, images=_batch(3, 32), methods=["gradcam", "saliency"],
                       progress=False)
    write_maps(tmp_path / "m.npz", image_ids=["a", "b", "c"], labels=[0, 1, 1],
               crops=np.zeros((3, 32, 32, 3), np.uint8), result=res, meta={"arch": "mnasnet_100"})
    back = read_maps(tmp_path / "m.npz")
    assert list(back["image_ids"]) == ["a", "b", "c"]
    assert back["maps"]["gradcam"].dtype == np.float16 and back["info"]["methods"] == ["gradcam", "saliency"]


def test_activation_maximization_raises_the_target_logit():
    from deepfake_xai.explain.actmax import maximize

    torch.manual_seed(0)
    model = ReLUNet().eval()
    x, trace = maximize(model, [0, 1], 16, steps=30, lr=0.2, blur_every=0, decay=0.0, seed=0)
    assert x.shape == (2, 3, 16, 16) and trace.shape == (30, 2)
    for i in (0, 1):
        assert np.mean(trace[-5:, i]) > np.mean(trace[:5, i]) + 0.05
    _, regular = maximize(model, [0, 1], 16, steps=30, seed=0)  # with jitter, blur and decay
    assert (regular[-5:].mean(axis=0) > regular[:5].mean(axis=0)).all()
    # one batch equals one run per class (no blur: the images are independent in eval mode)
    alone, _ = maximize(model, [1], 16, steps=5, lr=0.2, jitter=0, blur_every=0, seed=0)
    both, _ = maximize(model, [1, 1], 16, steps=5, lr=0.2, jitter=0, blur_every=0, seed=0)
    torch.testing.assert_close(both[0], alone[0], atol=1e-5, rtol=1e-4)


def _explain_command(tmp_path, synth_root, arch: str, *options: str) -> subprocess.CompletedProcess:
    """`deepfake-xai explain` on one synthetic fake with a freshly initialized ``arch``'s weights."""
    from safetensors.torch import save_file

    model = create_model(arch).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    image = next((synth_root / "TrueFace_PreSocial/Fake/StyleGAN/images-psi-0.5").glob("*.png"))
    return subprocess.run(
        [sys.executable, "-m", "deepfake_xai.cli", "explain", str(image), "--weights", str(tmp_path / "w.safetensors"),
         "--arch", arch, *options, "--out", str(tmp_path / "panel.png")], capture_output=True, text=True, timeout=300)


def test_explain_command_prints_a_verdict_and_writes_a_panel(tmp_path, synth_root):
    torch.manual_seed(0)
    proc = _explain_command(tmp_path, synth_root, "mnasnet_100", "--size", "32", "--method", "gradcam",
                            "guided_backprop", "cam")
    assert proc.returncode == 0, proc.stderr
    assert ("FAKE" in proc.stdout) or ("REAL" in proc.stdout)
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. torch's on a read-only decoded image
    from PIL import Image

    assert Image.open(tmp_path / "panel.png").size[0] >= 3 * 128


@pytest.mark.parametrize("arch", ["efficientnet_b0", "mnasnet_100", "resnet18"])
def test_the_default_cam_layer_is_the_input_of_the_global_pool(arch):
    """For a model outside the registry the target layer is found from the model itself: on registry
    models it finds the registry's own choice, and its output is what forward_features returns."""
    from deepfake_xai.models import REGISTRY, pooled_feature_layer

    model, _ = _model(arch, "bn2" if arch != "resnet18" else "layer4")
    name = pooled_feature_layer(model)
    assert name == (REGISTRY[arch].target_layer if arch in REGISTRY else "layer4")
    seen = []
    handle = get_module(model, name).register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        feats = model.forward_features(_batch(2))
    handle.remove()
    assert torch.equal(seen[0], feats)


def test_explain_command_on_a_timm_model_outside_the_registry(tmp_path, synth_root):
    torch.manual_seed(0)
    proc = _explain_command(tmp_path, synth_root, "convnext_atto", "--size", "64", "--resize", "64", "--method",
                            "gradcam", "cam")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "explaining layer 'norm_pre' (the input of the global pool" in proc.stdout
    assert (tmp_path / "panel.png").exists()


def test_explain_command_preprocesses_like_training_and_uses_the_threshold(tmp_path):
    """With the train.json a training job writes beside the weights, `explain` resizes and crops as
    the model was trained (resize 96, center crop 80, input 64 of a 200 x 160 photo): its printed
    probability equals the model's on exactly those pixels; --threshold decides the verdict."""
    import json

    import numpy as np
    from PIL import Image
    from safetensors.torch import save_file

    from deepfake_xai.data.cache import preprocess
    from deepfake_xai.runtime import IMAGENET_MEAN, IMAGENET_STD

    torch.manual_seed(0)
    model = create_model("mnasnet_100").eval()
    torch.nn.init.normal_(model.classifier.weight, std=0.01)  # probabilities away from 0 and 1
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    settings = {"arch": "mnasnet_100", "resize": 96, "center_crop": 80, "image_size": 64, "target_layer": None}
    (tmp_path / "train.json").write_text(json.dumps({"model": "m", "settings": settings}))
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8)).save(tmp_path / "photo.png")

    def prob(crop):
        x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255
        x = (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        with torch.no_grad():
            return float(model(x).softmax(1)[0, 1])

    photo = Image.open(tmp_path / "photo.png").convert("RGB")
    expected = prob(preprocess(photo, 96, 80)[8:72, 8:72])
    assert f"{prob(preprocess(photo, None, 64)):.4f}" != f"{expected:.4f}"  # no resize: another number

    def explain(*options):
        proc = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "explain", str(tmp_path / "photo.png"),
                               "--weights", str(tmp_path / "model.safetensors"), "--method", "gradcam",
                               "--out", str(tmp_path / "panel.png"), *options],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout

    # a threshold on the other side of the probability than 0.5: the verdict flips only if it is used
    threshold, verdict = (expected + 1e-3, "REAL") if expected >= 0.5 else (expected - 1e-3, "FAKE")
    threshold = float(f"{threshold:.6f}")
    out = explain("--threshold", str(threshold))
    assert f"settings from {tmp_path / 'train.json'}" in out
    assert f"{verdict} (probability of fake {expected:.4f}, threshold {threshold:g};" in out and "input 64 px" in out
    assert Image.open(tmp_path / "panel.png").size[0] >= 3 * 128


def test_a_bulk_cell_makes_one_guided_copy_and_batching_changes_no_map(monkeypatch):
    """The guided model (a deep copy with guided activations) is made once per cell, not per batch
    (vgg19's is 560 MB), and the maps equal those of one single batch."""
    from deepfake_xai.explain import guided
    from deepfake_xai.explain.bulk import explain_cell

    model, layer = _model("mnasnet_100", "bn2")
    copies = []
    original = guided.guided_copy
    monkeypatch.setattr(guided, "guided_copy", lambda m: copies.append(1) or original(m))
    x = _batch(8, 32)
    methods = ["guided_backprop", "guided_gradcam"]
    batched = explain_cell(model=model, target_layer=layer, images=x, methods=methods, batch_size=2, progress=False)
    assert len(copies) == 1
    whole = explain_cell(model=model, target_layer=layer, images=x, methods=methods, batch_size=8, progress=False)
    for name in methods:
        np.testing.assert_allclose(batched["maps"][name].astype(np.float32),
                                   whole["maps"][name].astype(np.float32), atol=2e-3)


def test_explain_settings_from_train_json_and_what_the_flags_override(tmp_path):
    import argparse
    import json

    from deepfake_xai.cli import _explain_settings

    (tmp_path / "train.json").write_text(json.dumps({"settings": {
        "arch": "vgg19", "target_layer": "features.36", "resize": 256, "center_crop": 224, "image_size": 224}}))

    def resolve(**flags):
        base = {"settings_json": None, "weights": str(tmp_path / "model.safetensors"), "arch": None, "size": None,
                "resize": None}
        return _explain_settings(argparse.Namespace(**{**base, **flags}))

    assert resolve() == {"arch": "vgg19", "target_layer": "features.36", "resize": 256, "center_crop": 224,
                         "image_size": 224}
    other = resolve(arch="efficientnet_b2")  # vgg19's layer name would not exist in it
    assert other["arch"] == "efficientnet_b2" and other["target_layer"] is None
    assert resolve(resize=0)["resize"] is None and resolve(size=64)["image_size"] == 64


def test_a_missing_target_layer_is_one_clear_line_naming_it(tmp_path, synth_root):
    """A config's target_layer that the model lacks: the layer and near names, no torch traceback."""
    from safetensors.torch import save_file

    model = create_model("mnasnet_100").eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "w.safetensors"))
    image = next((synth_root / "TrueFace_PreSocial/Fake/StyleGAN/images-psi-0.5").glob("*.png"))
    settings = '{"arch": "mnasnet_100", "target_layer": "blocks.99.bn2", "image_size": 32, "center_crop": 32}'
    proc = subprocess.run([sys.executable, "-m", "deepfake_xai.cli", "explain", str(image), "--weights",
                           str(tmp_path / "w.safetensors"), "--settings-json", settings, "--method", "gradcam",
                           "--out", str(tmp_path / "panel.png")], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "has no layer 'blocks.99.bn2'" in proc.stderr and "set models.<name>.target_layer" in proc.stderr
    assert not (tmp_path / "panel.png").exists()
