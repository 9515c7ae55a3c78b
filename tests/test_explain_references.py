"""Every CAM-family method against pytorch-grad-cam, and the methods for transformers, on four
architectures the rest of the suite does not use: a ReLU CNN (resnet10t), a SiLU CNN (tinynet_e),
a GELU CNN (convnext_atto) and a ViT (vit_tiny_patch16_224 on a 6x6 patch grid), random weights,
96 px, mixed targets. Target layers are the ones the workflow picks for them (pooled_feature_layer)."""

import numpy as np
import pytest
import torch

from deepfake_xai.explain import Context, NotApplicable, get_method
from deepfake_xai.explain.attention import recorded_attention
from deepfake_xai.explain.base import as_feature_map, normalize, upsample
from deepfake_xai.explain.guided import Guided, guided_copy
from deepfake_xai.models import ModelError, check_input_size, create_model, get_module, pooled_feature_layer

SIZE = 96
# convnext's layer scale starts at 1e-6, which makes a random block nearly the identity: 1 instead
ARCHS = {"resnet10t": None, "tinynet_e": None, "convnext_atto": {"ls_init_value": 1.0},
         "vit_tiny_patch16_224": {"img_size": SIZE}}
# ours -> pytorch-grad-cam's class
REFERENCES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM", "layercam": "LayerCAM",
              "eigencam": "EigenCAM", "scorecam": "ScoreCAM"}
_MODELS = {}


def _model(arch):
    if arch not in _MODELS:
        torch.manual_seed(3)
        model = create_model(arch, model_args=ARCHS[arch]).eval()
        _MODELS[arch] = model, get_module(model, pooled_feature_layer(model, SIZE))
    return _MODELS[arch]


def _batch(n=3):
    x = torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(11))
    return x, torch.tensor([1, 0, 1][:n])


def _reference(cls, model, layer, x, t):
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    with cls(model=model, target_layers=[layer], reshape_transform=lambda a: as_feature_map(a, model)) as cam:
        return torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t]))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", REFERENCES)
def test_cam_family_equals_pytorch_grad_cam(arch, method):
    import pytorch_grad_cam as pgc

    model, layer = _model(arch)
    x, t = _batch(2 if method == "scorecam" else 3)
    mine = get_method(method)(model, x, t, layer)
    ref = _reference(getattr(pgc, REFERENCES[method]), model, layer, x, t)
    assert mine.shape == ref.shape == (len(x), SIZE, SIZE)
    assert float(ref.amax()) > 0.99  # a map, not all zeros (both sides would agree on nothing)
    assert float((mine - ref).abs().max()) <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_activation_map_equals_pytorch_grad_cam_with_uniform_weights(arch):
    """The channel mean of the activations is pytorch-grad-cam's BaseCAM with weights 1/K."""
    from pytorch_grad_cam.base_cam import BaseCAM

    class MeanActivation(BaseCAM):
        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            return np.full(activations.shape[:2], 1.0 / activations.shape[1], dtype=np.float32)

    model, layer = _model(arch)
    x, t = _batch()
    if "vit" in arch:  # the CAM layer is a LayerNorm: a constant channel mean, so a block's output instead
        with pytest.raises(NotApplicable, match="LayerNorm"):
            get_method("activation")(model, x, t, layer)
        layer = model.blocks[-1]
    mine = get_method("activation")(model, x, t, layer)
    assert float((mine - _reference(MeanActivation, model, layer, x, t)).abs().max()) <= 1e-4


@pytest.mark.parametrize("arch", ARCHS)
def test_cam_is_relu_free_grad_cam_on_a_pooling_head_and_not_applicable_elsewhere(arch):
    """On a global-average-pooling + linear head dS/dA = w/(hw) everywhere, so pytorch-grad-cam's
    Grad-CAM is ReLU(CAM) up to scale; a ViT's class-token head is no such head."""
    from pytorch_grad_cam import GradCAM

    model, layer = _model(arch)
    x, t = _batch()
    if arch in ("vit_tiny_patch16_224", "convnext_atto"):  # class token; pooling, LayerNorm, linear
        with pytest.raises(NotApplicable, match="tokens" if "vit" in arch else "not global average pooling"):
            get_method("cam")(model, x, t, layer)
        return
    ctx = Context.capture(model, x, t, layer, need_gradients=False)
    cam_raw = get_method("cam").raw(ctx)
    relu_cam = normalize(upsample(normalize(torch.relu(cam_raw)), (SIZE, SIZE)))
    assert float((relu_cam - _reference(GradCAM, model, layer, x, t)).abs().max().detach()) <= 1e-4


def test_token_maps_drop_the_class_token_and_follow_the_patch_grid():
    model, layer = _model("vit_tiny_patch16_224")
    x, t = _batch()
    ctx = Context.capture(model, x, t, layer)
    assert ctx.tokens and ctx.activations.shape == (3, 192, 6, 6) and ctx.gradients.shape == (3, 192, 6, 6)
    tokens = []
    handle = layer.register_forward_hook(lambda _m, _i, out: tokens.append(out.detach()))
    with torch.no_grad():
        model(x)
    handle.remove()
    # patch token (row 2, column 4) is token 1 + 2 * 6 + 4 (the class token first)
    assert torch.equal(ctx.activations[:, :, 2, 4], tokens[0][:, 1 + 2 * 6 + 4])


def test_attention_rollout_equals_the_chained_attention_computed_by_hand():
    torch.manual_seed(5)
    model = create_model("vit_tiny_patch16_224", model_args={"img_size": 64, "depth": 2}).eval()
    x, t = _batch(2)
    x = x[:, :, :64, :64]
    # by hand: each block's softmax(q k^T / sqrt(d)) from its own weights, mixed with I, chained
    with torch.no_grad():
        h = model.patch_embed(x)
        h = model._pos_embed(h)
        h = model.norm_pre(h)
        joint = torch.eye(h.shape[1]).expand(len(x), -1, -1)
        for block in model.blocks:
            a = block.attn
            q, k, _v = a.qkv(block.norm1(h)).reshape(len(x), h.shape[1], 3, a.num_heads, -1).permute(2, 0, 3, 1, 4)
            probs = torch.softmax(q @ k.transpose(-2, -1) * a.head_dim ** -0.5, -1).mean(1)
            mixed = 0.5 * probs + 0.5 * torch.eye(h.shape[1])
            joint = (mixed / mixed.sum(-1, keepdim=True)) @ joint
            h = block(h)
    expected = joint[:, 0, 1:].reshape(2, 4, 4)
    ctx = Context.capture(model, x, t, get_module(model, "blocks.1.norm1"), need_gradients=False)
    raw = get_method("attention_rollout").raw(ctx)
    assert torch.allclose(raw, expected, atol=1e-6)
    assert all(b.attn.fused_attn for b in model.blocks)  # the fused kernel is back on afterwards
    # rollout does not depend on the class explained
    ctx1 = Context.capture(model, x, 1 - t, get_module(model, "blocks.1.norm1"), need_gradients=False)
    assert torch.allclose(get_method("attention_rollout").raw(ctx1), raw)


def test_attention_rollout_is_not_applicable_to_a_cnn():
    model, layer = _model("convnext_atto")
    with pytest.raises(NotApplicable, match="no self-attention"):
        with recorded_attention(model):
            pass
    with pytest.raises(NotApplicable):
        get_method("attention_rollout")(model, *_batch(), layer)


@pytest.mark.parametrize("arch", ["convnext_atto", "vit_tiny_patch16_224", "tinynet_e"])
def test_guided_backprop_on_smooth_activations_gates_like_relu(arch):
    """Through the guided copy a negative incoming gradient never passes an activation, and the map
    differs from the plain input gradient (pytorch-grad-cam's ReLU-only swap would return it)."""
    model, layer = _model(arch)
    x, t = _batch()
    guided = guided_copy(model)
    wrapped = [m for m in guided.modules() if isinstance(m, Guided)]
    assert wrapped, "no activation was wrapped"
    # the activation's input gradient of each wrapped module is >= 0 by construction
    grads = []
    hooks = [m.register_full_backward_hook(lambda _m, gi, _go: grads.append(gi[0])) for m in wrapped]
    xx = x.clone().requires_grad_(True)
    (g_guided,) = torch.autograd.grad(guided(xx).gather(1, t[:, None]).sum(), xx)
    for h in hooks:
        h.remove()
    assert grads and all(g is None or float(g.min()) >= 0 for g in grads)
    xx = x.clone().requires_grad_(True)
    (g_plain,) = torch.autograd.grad(model(xx).gather(1, t[:, None]).sum(), xx)
    assert not torch.allclose(g_guided, g_plain, atol=1e-6)
    maps = get_method("guided_backprop")(model, x, t, layer)
    assert maps.shape == (3, SIZE, SIZE) and float(maps.min()) >= 0 and float(maps.amax()) > 0


def test_bad_layers_sizes_and_weights_are_named():
    model, _ = _model("vit_tiny_patch16_224")
    with pytest.raises(ModelError, match=r"no layer 'blocks\.99\.norm1'.*blocks\.11\.norm1"):
        get_module(model, "blocks.99.norm1")
    with pytest.raises(ModelError, match=r"vit_tiny_patch16_224 does not take 128 px.*img_size: 128"):
        check_input_size(model, 128, "vit_tiny_patch16_224")
    check_input_size(model, SIZE, "vit_tiny_patch16_224")
    with pytest.raises(ModelError, match=r"shape \(3, 5\).*neither a feature map"):
        as_feature_map(torch.zeros(3, 5), model)
    with pytest.raises(ModelError, match="timm refuses model_args"):
        create_model("resnet10t", model_args={"img_size": 96})
