"""GPU slots: concurrent GPU jobs under `snakemake --resources gpu=N` each get their own device.
Checked without GPUs: the jobs record the CUDA_VISIBLE_DEVICES they were given and when they ran."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import SNAKEMAKE

from deepfake_xai import gpus


def test_slots_are_exclusive_and_freed_when_the_holder_exits(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from deepfake_xai.gpus import claim_slot
        print(claim_slot(2, {str(tmp_path)!r}), flush=True)
        sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "0"
    assert gpus.claim_slot(2, tmp_path) == 1  # slot 0 is held by the other process
    with pytest.raises(TimeoutError, match="no free GPU slot among 2"):
        gpus.claim_slot(2, tmp_path, timeout=0.3)
    holder.kill()  # killed, not closed cleanly: the OS still releases its lock
    holder.wait()
    assert gpus.claim_slot(2, tmp_path, timeout=5) == 0


def test_scheduler_choice_wins_and_one_gpu_needs_nothing(tmp_path):
    env = {"CUDA_VISIBLE_DEVICES": "3", "DFX_GPU_SLOTS": "4", "DFX_GPU_LOCK_DIR": str(tmp_path)}
    assert gpus.assign_visible_device(env) is None and env["CUDA_VISIBLE_DEVICES"] == "3"
    env = {"DFX_GPU_SLOTS": "1"}
    assert gpus.assign_visible_device(env) is None and "CUDA_VISIBLE_DEVICES" not in env
    env = {"CUDA_VISIBLE_DEVICES": "", "DFX_GPU_SLOTS": "4", "DFX_GPU_LOCK_DIR": str(tmp_path)}  # GPUs hidden
    assert gpus.assign_visible_device(env) is None and env["CUDA_VISIBLE_DEVICES"] == ""


def test_only_commands_that_may_use_a_gpu_claim_a_slot():
    from deepfake_xai.cli import build_parser
    from deepfake_xai.stages.plumbing import wants_gpu

    cache = ["cache", "--manifest", "m", "--dataset", "d", "--root", "r", "--out", "o", "--index", "i",
             "--center-crop", "32"]
    assert not wants_gpu(build_parser().parse_args(cache))  # PIL decoding
    assert not wants_gpu(build_parser().parse_args([*cache, "--jpeg-device", "cpu"]))
    assert wants_gpu(build_parser().parse_args([*cache, "--jpeg-device", "cuda"]))
    metrics = ["metrics", "--predictions", "p", "--out", "o"]
    assert not wants_gpu(build_parser().parse_args(metrics))
    # an explicit GPU is the user's choice: a slot would hide it (CUDA_VISIBLE_DEVICES=<slot>, cuda:1 invalid)
    predict = ["predict", "--cache", "c", "--cache-index", "i", "--manifest", "m", "--dataset", "d",
               "--settings-json", "{}", "--weights", "w", "--parts", "presocial", "--out", "o"]
    assert wants_gpu(build_parser().parse_args([*predict, "--device", "cuda"]))
    assert wants_gpu(build_parser().parse_args([*predict, "--device", "auto"]))
    assert not wants_gpu(build_parser().parse_args([*predict, "--device", "cuda:1"]))
    assert not wants_gpu(build_parser().parse_args([*predict, "--device", "cpu"]))
    assert not wants_gpu(build_parser().parse_args([*cache, "--jpeg-device", "cuda:1"]))


SNAKEFILE = """
rule all:
    input: expand("out/{i}.json", i=range(6))

rule gpu_job:
    output: "out/{i}.json"
    resources: gpu=1
    shell:
        "{PY} -c 'import json, os, sys, time; from deepfake_xai.gpus import assign_visible_device; "
        "assign_visible_device(); t0 = time.time(); time.sleep(1.5); "
        "json.dump({{\\"gpu\\": os.environ[\\"CUDA_VISIBLE_DEVICES\\"], \\"start\\": t0, \\"end\\": time.time()}}, "
        "open(sys.argv[1], \\"w\\"))' {output}"
"""


def test_concurrent_snakemake_gpu_jobs_get_different_devices(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE.replace("{PY}", sys.executable))
    env = {**os.environ, "DFX_GPU_SLOTS": "2", "DFX_GPU_LOCK_DIR": str(tmp_path / "locks")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([SNAKEMAKE, "--cores", "4", "--resources", "gpu=2"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads((tmp_path / f"out/{i}.json").read_text()) for i in range(6)]
    assert {r["gpu"] for r in runs} == {"0", "1"}
    overlapping = [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:]
                   if a["start"] < b["end"] and b["start"] < a["end"]]
    assert overlapping, "the jobs never ran concurrently: nothing was tested"
    assert all(a["gpu"] != b["gpu"] for a, b in overlapping)
