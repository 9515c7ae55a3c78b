#!/usr/bin/env bash
# One prepared GPU check (fits in a few minutes, needs no network): the CUDA training path end to
# end on the synthetic data, and training throughput fed from the cache vs from GPU tensors.
# Usage on a GPU machine, from the repository root:  OUT=/some/dir bash benchmarks/gpu.sh
set -euo pipefail
OUT=${OUT:-$(mktemp -d)}
PY=${PY:-python3}
# The GPU image lacks grad-cam and ttach: install the wheels carried in .whl/ (built here with
# `pip wheel --no-deps grad-cam ttach -w .whl`).
if [ -d .whl ] && ! $PY -c "import pytorch_grad_cam" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L | tee "$OUT/gpu.txt"
$PY -c "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

dx() { $PY -m deepfake_xai.cli --quiet "$@"; }
W=$(mktemp -d)
echo "== CUDA path: synthetic data -> manifest -> cache -> train -> predict -> metrics"
dx synth --out "$W/data" --workers 8
dx manifest --root "$W/data" --dataset synthetic --out "$W/manifest.parquet" --rejected "$W/rejected.parquet" \
  --summary "$W/summary.csv" --config-json '{"workers": 8}'
dx cache --manifest "$W/manifest.parquet" --dataset synthetic --root "$W/data" --out "$W/c.npy" \
  --index "$W/c.parquet" --center-crop 64 --workers 8
S='{"arch": "efficientnet_b2", "target_layer": "bn2", "resize": null, "center_crop": 64, "image_size": 64,
 "epochs": 4, "batch_size": 16, "optimizer": "adamw", "lr": 0.001, "weight_decay": 0.0001, "momentum": 0.9,
 "schedule": "cosine", "warmup_epochs": 0, "label_smoothing": 0.0, "seed": 0, "random_crop": true, "hflip": true,
 "jpeg_augment": 0.0, "max_train_images": 256, "pretrained": false, "pretrained_file": null, "amp": true,
 "channels_last": true, "compile": false, "loader_workers": 2}'
common=(--cache "$W/c.npy" --cache-index "$W/c.parquet" --manifest "$W/manifest.parquet" --dataset synthetic
        --settings-json "$S" --device cuda)
dx train "${common[@]}" --train-set presocial --out-dir "$W/model"
cp "$W/model/train.json" "$OUT/train_b2_presocial_cuda.json"
dx predict "${common[@]}" --weights "$W/model/model.safetensors" --parts presocial facebook telegram twitter \
  --out "$W/p_pre.parquet" "$W/p_fb.parquet" "$W/p_tl.parquet" "$W/p_tw.parquet" --combined "$W/p_all.parquet"
for p in pre fb tl tw all; do dx metrics --predictions "$W/p_$p.parquet" --out "$W/m_$p.json"; done
dx explain-cell "${common[@]}" --weights "$W/model/model.safetensors" --predictions "$W/p_pre.parquet" \
  --n-images 64 --out "$W/maps.npz" --panels-dir "$W/panels" 2>&1 | tee "$OUT/explain_cuda.txt" \
  || echo "explain-cell FAILED"
$PY - "$W" <<'PYEOF' | tee "$OUT/cuda_path.txt"
import json, sys
w = sys.argv[1]
t = json.load(open(f"{w}/model/train.json"))
print(f"train on {t['device']}: {t['images_per_s']:.0f} images/s, bf16={t['amp_bf16']}, channels_last={t['channels_last']}")
for p in ("pre", "fb", "tl", "tw", "all"):
    m = json.load(open(f"{w}/m_{p}.json"))
    print(f"efficientnet_b2/presocial -> {p}: accuracy {m['accuracy']:.4f}, n={m['n']}")
PYEOF

echo "== bulk Grad-CAM vs pytorch-grad-cam"
$PY benchmarks/heatmap_throughput.py --model efficientnet_b2 --size 256 --batch 64 --repeats 10 \
  --json "$OUT/heatmap_throughput_b2_256.json"

echo "== training throughput: memory-mapped cache vs tensors already on the GPU"
$PY benchmarks/train_throughput.py --model efficientnet_b2 --size 256 --cached 264 --batch 128 --steps 40 \
  --warmup 5 --images 3072 --loader-workers 6 --json "$OUT/train_throughput_b2_256.json"
echo "== evaluation images/s from the cache, eager and torch.compile"
(cd benchmarks && $PY eval_throughput.py --model efficientnet_b2 --size 256 --batch 512 --images 8192 \
  --loader-workers 6 --compile --json "$OUT/eval_throughput_b2_256.json") || echo "eval_throughput FAILED"
rm -rf "$W"
