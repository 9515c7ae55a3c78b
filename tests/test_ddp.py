"""Multi-process training with torchrun (DistributedDataParallel), on the CPU with the gloo backend:
the ranks train on different images, agree on the weights, and rank 0 writes the usual outputs."""

import json
import subprocess
import sys
from pathlib import Path

from conftest import tiny_settings
from safetensors.torch import load_file

from deepfake_xai.train import Distributed, shard, state_digest


def test_shards_are_disjoint_equal_and_cover_the_epoch():
    parts = [shard(11, seed=3, dist=Distributed(rank=r, local_rank=r, world=3)) for r in range(3)]
    assert all(len(p) == 11 // 3 for p in parts)
    assert not set(parts[0]) & set(parts[1]) and not set(parts[1]) & set(parts[2])
    assert shard(11, 3, Distributed()).tolist() == sorted(shard(11, 3, Distributed()).tolist())


def test_two_process_ddp_on_cpu(prepared, tmp_path):
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    settings = tiny_settings(epochs=2, batch_size=4, max_train_images=32, loader_workers=0)
    out = tmp_path / "model"
    proc = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "deepfake_xai.cli", "--quiet", "train",
         "--cache", str(prepared["cache"]), "--cache-index", str(prepared["index"]),
         "--manifest", str(prepared["manifest"]), "--dataset", prepared["dataset"],
         "--settings-json", json.dumps(settings), "--train-set", "presocial", "--out-dir", str(out),
         "--device", "cpu", "--threads", "1"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.loads((out / f"ddp/rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    seen0, seen1 = (r["image_ids"] for r in ranks)
    summary = json.loads((out / "train.json").read_text())
    per_epoch = summary["n_train"] // 2  # each rank: half of the epoch's images
    assert per_epoch >= 8 and len(seen0) == len(seen1) == 2 * per_epoch
    for e in range(2):  # within an epoch the ranks' images never overlap
        assert not set(seen0[per_epoch * e:per_epoch * (e + 1)]) & set(seen1[per_epoch * e:per_epoch * (e + 1)])
    saved = state_digest(load_file(str(out / "model.safetensors")))
    assert ranks[0]["best_state_sha256"] == ranks[1]["best_state_sha256"] == saved
    assert summary["world_size"] == 2 and summary["best_epoch"] == ranks[1]["best_epoch"]
    assert (out / "log.csv").exists()
