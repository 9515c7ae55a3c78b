"""The model registry: paper models, target layers, local pretrained weights, unknown names."""

import pytest
import torch
from safetensors.torch import save_file

from deepfake_xai import config as dxcfg
from deepfake_xai.models import (
    REGISTRY,
    UnknownModelError,
    check_arch,
    create_model,
    get_module,
    info,
    load_backbone,
)

PAPER = ["vgg19", "resnet50", "densenet121", "mnasnet_100", "efficientnet_b0", "efficientnet_b1",
         "efficientnet_b2"]


def test_registry_holds_the_paper_models_with_a_two_class_head():
    assert sorted(REGISTRY) == sorted(PAPER)
    for name in ["resnet50", "efficientnet_b2"]:
        model = create_model(name)
        assert model.get_classifier().out_features == 2


@pytest.mark.parametrize("name", PAPER)
def test_target_layer_is_the_last_feature_map(name):
    with torch.device("meta"):
        model = create_model(name)
    layer = get_module(model, REGISTRY[name].target_layer)
    seen = {}
    layer.register_forward_hook(lambda m, i, o: seen.update(shape=o.shape))
    features = model.forward_features(torch.zeros(1, 3, 64, 64, device="meta"))
    assert seen["shape"] == features.shape  # the input of the global pool (vgg19: of pre-logits)


def test_unknown_arch_is_refused_with_suggestions():
    with pytest.raises(UnknownModelError, match="did you mean resnet50"):
        check_arch("resnet5")


def test_an_eighth_model_is_one_config_line():
    config = {"train": {"image_size": 32, "center_crop": 32, "lr": 0.1}, "models": {"resnet18": None},
              "train_sets": ["presocial"], "test_sets": ["presocial"]}
    s = dxcfg.model_settings(config, "resnet18")
    assert s["arch"] == "resnet18" and s["lr"] == 0.1
    assert dxcfg.unknown_archs(config) == ["resnet18"]
    check_arch("resnet18")
    assert info("resnet18").target_layer == ""  # CAM methods fall back to the global pool input


def test_local_pretrained_file_loads_everything_but_the_head(tmp_path):
    torch.manual_seed(1)
    donor = create_model("resnet18", num_classes=1000)
    path = tmp_path / "imagenet.safetensors"
    save_file({k: v.contiguous() for k, v in donor.state_dict().items()}, str(path))
    model = create_model("resnet18", pretrained_file=path)
    mine, theirs = model.state_dict(), donor.state_dict()
    for k, v in mine.items():
        if k.startswith("fc."):
            assert v.shape[0] == 2
        else:
            assert torch.equal(v, theirs[k]), k
    # a PyTorch state dict works too, read with weights_only=True
    pt = tmp_path / "imagenet.pth"
    torch.save({"state_dict": donor.state_dict()}, pt)
    report = load_backbone(create_model("resnet18"), pt)
    assert report["skipped"] == ["fc.bias", "fc.weight"]


def test_pretrained_file_that_is_not_plain_tensors_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed!",))

    path = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, path)
    with pytest.raises(ValueError, match="not loadable as plain tensors"):
        create_model("resnet18", pretrained_file=path)
    with pytest.raises(FileNotFoundError):
        create_model("resnet18", pretrained_file=tmp_path / "missing.safetensors")
