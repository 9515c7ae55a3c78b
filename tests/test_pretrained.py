"""Pretrained weights as a stage: fetched once from a loopback HTTP server (a weights file the test
writes), verified and stored under resources/pretrained/; training jobs read only that file and never
touch the network; a frozen backbone trains the head alone; a small ViT trained and explained end to
end by Snakemake."""

import functools
import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, copy_repo, run_snakemake
from safetensors.torch import load_file

from deepfake_xai.data.download import ChecksumError
from deepfake_xai.explain.bulk import read_maps
from deepfake_xai.models import ModelError, create_model
from deepfake_xai.pretrained import check_source, fetch

VIT_ARGS = {"img_size": 32, "patch_size": 8, "depth": 2}


@pytest.fixture
def served(tmp_path):
    """A directory on a loopback HTTP server: (directory, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def _imagenet_like(path: Path, arch: str, model_args=None, seed=7) -> dict:
    """A 1000-class checkpoint of ``arch`` as a PyTorch file (what a model zoo serves)."""
    torch.manual_seed(seed)
    state = create_model(arch, num_classes=1000, model_args=model_args).state_dict()
    torch.save(state, path)
    return state


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_url_source_is_downloaded_verified_and_stored_without_its_head(served, tmp_path):
    root, base = served
    source = _imagenet_like(root / "r10.pth", "resnet10t")
    out = tmp_path / "resources/pretrained/r10.safetensors"
    record = fetch("resnet10t", out, source=f"{base}/r10.pth", sha256=_sha(root / "r10.pth"), progress=False)
    stored = load_file(str(out))
    assert set(stored) == set(source) - {"fc.weight", "fc.bias"}  # the 1000-class head is left out
    assert all(torch.equal(stored[k], source[k]) for k in stored)
    assert record["kind"] == "url" and record["skipped"] == ["fc.bias", "fc.weight"] and record["missing"] == []
    assert json.loads(out.with_suffix(".json").read_text())["sha256"] == _sha(out)
    assert {p.name for p in out.parent.iterdir()} == {"r10.safetensors", "r10.json"}  # no download left behind


def test_a_wrong_checksum_or_misfit_weights_write_nothing_and_say_what(served, tmp_path):
    root, base = served
    _imagenet_like(root / "r10.pth", "resnet10t")
    out = tmp_path / "p/x.safetensors"
    with pytest.raises(ChecksumError):
        fetch("resnet10t", out, source=f"{base}/r10.pth", sha256="0" * 64, progress=False)
    assert not out.exists() and not list(out.parent.glob("*"))
    _imagenet_like(tmp_path / "other.pth", "tinynet_e")
    with pytest.raises(ModelError, match=r"other\.pth: of its \d+ tensors only \d+ fit the \d+ backbone tensors of resnet10t.*another architecture"):
        fetch("resnet10t", out, source=str(tmp_path / "other.pth"))
    with pytest.raises(ModelError, match="SHA-256 .* is not pretrained_sha256"):
        fetch("resnet10t", out, source=str(root / "r10.pth"), sha256="1" * 64)
    assert not out.exists()
    with pytest.raises(ValueError, match=r"models.m.pretrained_from: the URL .* needs pretrained_sha256"):
        check_source("https://example.org/w.pth", None, "models.m.pretrained_from")


def test_a_timm_source_without_network_names_the_way_out(tmp_path, monkeypatch):
    import socket

    def no_network(*_a, **_k):
        raise OSError("no network (the test)")

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries for a minute
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError, match="timm could not fetch .*resnet10t.*give pretrained_from a URL"):
        fetch("resnet10t", tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


SITECUSTOMIZE = '''
import json, os, socket, sys
_connect = socket.socket.connect
def connect(self, address):
    with open(os.environ["DFX_NET_LOG"], "a") as fh:
        fh.write(json.dumps({"argv": sys.argv[1:2], "address": str(address)}) + "\\n")
    if not (isinstance(address, tuple) and address[0] in ("127.0.0.1", "::1")):
        raise OSError(f"the test allows loopback connections only: {address}")
    return _connect(self, address)
socket.socket.connect = connect
'''


def test_a_vit_cell_from_a_served_checkpoint_trains_frozen_offline_and_is_explained(served, tmp_path, monkeypatch):
    """The pretrained job alone talks to the network (the loopback server); the training jobs read
    resources/pretrained/<model>.safetensors only: a frozen backbone ends equal to that file, and
    no model cache is ever filled. A second ViT trains in full; both are predicted and explained."""
    root, base = served
    _imagenet_like(root / "vit.pth", "vit_tiny_patch16_224", VIT_ARGS)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    net_log = tmp_path / "net.jsonl"
    for var, value in {"PYTHONPATH": str(site), "DFX_NET_LOG": str(net_log), "HF_HOME": str(tmp_path / "hf"),
                       "TORCH_HOME": str(tmp_path / "torch"), "XDG_CACHE_HOME": str(tmp_path / "xdg")}.items():
        monkeypatch.setenv(var, value)
    wd = copy_repo(tmp_path / "wd")
    cfg = yaml.safe_load((REPO / "tests/data/tiny.yaml").read_text())
    vit = {"arch": "vit_tiny_patch16_224", "model_args": VIT_ARGS}
    cfg["models"] = {"vit_probe": {**vit, "pretrained": True, "pretrained_from": f"{base}/vit.pth",
                                   "pretrained_sha256": _sha(root / "vit.pth"), "freeze_backbone": True,
                                   "lr": 0.01, "epochs": 3},
                     "vit": {**vit, "lr": 0.0005}}
    cfg["grid"] = [{"models": ["vit_probe", "vit"], "train_sets": ["presocial"]}]
    cfg["test_sets"] = ["presocial"]
    cfg["explain"]["cells"] = [{"train_sets": ["presocial"], "test_sets": ["presocial"]}]
    (wd / "vit.yaml").write_text(yaml.safe_dump(cfg))
    cells = [f"results/tiny/{kind}/{m}/presocial/presocial.json" for m in ("vit_probe", "vit")
             for kind in ("metrics", "xai_metrics")]
    maps = [f"results/tiny/heatmaps/{m}/presocial/presocial/maps.npz" for m in ("vit_probe", "vit")]
    run_snakemake(wd, *cells, *maps, "--cores", "2", "--configfile", "vit.yaml", timeout=1200)

    calls = [json.loads(line) for line in net_log.read_text().splitlines()]
    assert calls and {c["argv"][0] for c in calls} == {"pretrained"}  # nobody else opened a socket
    summary = json.loads((wd / "results/tiny/models/vit_probe/presocial/train.json").read_text())
    assert summary["init"]["file"] == "resources/pretrained/vit_probe.safetensors"
    assert summary["init"]["sha256"] == _sha(wd / "resources/pretrained/vit_probe.safetensors")
    assert json.loads((wd / "results/tiny/models/vit/presocial/train.json").read_text())["init"] == {"random_seed": 0}
    backbone = load_file(str(wd / "resources/pretrained/vit_probe.safetensors"))
    trained = load_file(str(wd / "results/tiny/models/vit_probe/presocial/model.safetensors"))
    assert set(trained) - set(backbone) == {"head.weight", "head.bias"}
    assert all(torch.equal(trained[k], backbone[k]) for k in backbone)  # frozen: the file, unchanged
    filled = [str(p.relative_to(tmp_path)) for d in ("hf", "torch", "xdg/huggingface", "xdg/torch")
              if (tmp_path / d).exists()
              for p in (tmp_path / d).rglob("*") if p.is_file()]
    assert not filled, filled
    log = (wd / "results/tiny/logs/train/vit_probe/presocial.log").read_text()
    assert "features of" in log
    for m in ("vit_probe", "vit"):
        cell = read_maps(wd / f"results/tiny/heatmaps/{m}/presocial/presocial/maps.npz")
        assert {"gradcam", "gradcam++", "attention_rollout", "guided_backprop", "saliency"} <= set(cell["maps"])
        assert "cam" in cell["info"]["not_applicable"]  # a class-token head
        rollout = cell["maps"]["attention_rollout"].astype("float32")
        assert rollout.shape[1:] == (32, 32) and float(rollout.std()) > 0
        xai = (wd / f"results/tiny/xai_metrics/{m}/presocial/presocial.json").read_text()
        assert "attention_rollout" in xai and "gradcam" in xai
