#!/usr/bin/env bash
# One prepared GPU check for issue 10's figures: about 6 minutes on an H100, no network needed.
#
#   OUT=/some/dir bash benchmarks/gpu.sh              # on a GPU machine, from the repository root
#   DEVICE=cpu OUT=/tmp/g bash benchmarks/gpu.sh      # rehearsal on a CPU: every step, small sizes
#
# 1. installs what the GPU image lacks (grad-cam, ttach, snakemake and its dependencies) from the
#    wheels carried in .whl/ (see "Wheels" below), into /tmp/site;
# 2. runs one real training + evaluation + explanation cell through `snakemake` on a synthetic
#    dataset at 256 px (efficientnet_b2 trained on pre-social, tested on pre-social and combined);
# 3. prints the figures: training images/s fed from the cache vs from tensors on the device, evaluation
#    images/s (eager and torch.compile), bulk Grad-CAM vs pytorch-grad-cam, cache build images/s
#    with PIL and with nvJPEG.
# Every figure is also written under $OUT as JSON or text.
#
# Wheels (built on the development machine; the GPU image has Python 3.12):
#   pip wheel --no-deps grad-cam ttach -w .whl
#   pip wheel --no-deps connection_pool -w .whl/py312     (published only as an sdist)
#   pip download snakemake==9.27.1 --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
#       --find-links .whl/py312 -d .whl/py312
set -euo pipefail
OUT=${OUT:-$(mktemp -d)}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
SITE=${SITE:-/tmp/site}
REPO=$PWD
mkdir -p "$OUT"
if [ "$DEVICE" = cuda ]; then
  SIZE=256; CROP=224; REAL=1200; FAKE=300; EPOCHS=3; BATCH=64; CORES=16; HM_BATCH=64; HM_REPEATS=10
  TT="--batch 128 --steps 40 --warmup 5 --images 3072 --loader-workers 6"
  ET="--batch 512 --images 8192 --loader-workers 6 --compile"; CT="--images 96 --size 1024 --jpeg-device cuda"
else
  SIZE=64; CROP=56; REAL=120; FAKE=30; EPOCHS=1; BATCH=16; CORES=2; HM_BATCH=8; HM_REPEATS=1
  TT="--batch 16 --steps 3 --warmup 1 --images 64 --loader-workers 1 --rounds 1"
  ET="--batch 64 --images 128 --loader-workers 1"; CT="--images 8 --size 256 --jpeg-device cpu"
fi

# ---- 1. what the image lacks, from the carried wheels
if [ -d .whl ]; then
  if ! $PY -c "import pytorch_grad_cam, ttach" 2>/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" .whl/*.whl
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  if ! $PY -c "import snakemake" 2>/dev/null && [ -d .whl/py312 ]; then
    $PY -m pip install -q --no-index --no-compile --find-links .whl/py312 --target "$SITE" snakemake
  fi
fi
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
{ nvidia-smi -L 2>/dev/null || echo "no GPU (DEVICE=$DEVICE)"
  $PY -c "import torch, timm, snakemake; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'timm', timm.__version__, 'snakemake', snakemake.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
} | tee "$OUT/machine.txt"

# ---- 2. one cell through snakemake, in a copy of the workflow
W=$(mktemp -d)
mkdir -p "$W/repo"
cp -r Snakefile environment.yml workflow config src "$W/repo/"
cat > "$W/repo/gpu.yaml" <<EOF
dataset: synthetic
data:
  source: synthetic
  synthetic: {image_size: $SIZE, real: $REAL, fake: {stylegan: {"0.5": $FAKE, "0.7": $FAKE}, stylegan2: {"0.5": $FAKE, "1": $FAKE}}}
train: {center_crop: $SIZE, image_size: $CROP, epochs: $EPOCHS, batch_size: $BATCH, max_train_images: null}
models: {efficientnet_b2: {}}
train_sets: [presocial]
test_sets: [presocial, combined]
grid: [{models: [efficientnet_b2], train_sets: [presocial]}]
compute: {train_threads: $CORES, predict_threads: $CORES, cache_workers: $CORES, device: $DEVICE}
explain: {cells: [{train_sets: [presocial], test_sets: [presocial]}], n_images: 64, panels: 2, actmax_steps: 32}
xai: {n_images: 16, steps: 8}
EOF
R=results/synthetic
T0=$(date +%s%N)
(cd "$W/repo" && $PY -m snakemake \
  $R/metrics/efficientnet_b2/presocial/presocial.json $R/metrics/efficientnet_b2/presocial/combined.json \
  $R/xai_metrics/efficientnet_b2/presocial/presocial.json \
  --cores "$CORES" --resources gpu=1 --configfile gpu.yaml --quiet rules) > "$OUT/snakemake_cell.txt" 2>&1 \
  || { echo "snakemake cell FAILED"; tail -40 "$OUT/snakemake_cell.txt"; cp -r "$W/repo/$R/logs" "$OUT/cell_logs" || true; }
T1=$(date +%s%N)
cp -r "$W/repo/$R/benchmarks" "$OUT/snakemake_benchmarks" || true
$PY - "$W/repo/$R" "$T0" "$T1" <<'PYEOF' | tee "$OUT/snakemake_cell_summary.txt" || echo "no cell summary"
import json, sys
r, wall = sys.argv[1], (int(sys.argv[3]) - int(sys.argv[2])) / 1e9
t = json.load(open(f"{r}/models/efficientnet_b2/presocial/train.json"))
print(f"snakemake cell (data, manifest, cache, train, predict, metrics, explain, xai): {wall:.1f} s")
print(f"train on {t['device']}: {t['n_train']} images x {t['epochs']} epochs, {t['images_per_s']:.0f} images/s, "
      f"bf16={t['amp_bf16']}, channels_last={t['channels_last']}")
for part in ("presocial", "combined"):
    m = json.load(open(f"{r}/metrics/efficientnet_b2/presocial/{part}.json"))
    print(f"efficientnet_b2/presocial -> {part}: accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f}, n={m['n']}")
x = json.load(open(f"{r}/xai_metrics/efficientnet_b2/presocial/presocial.json"))
print(f"explanation quality: {len(x['methods'])} methods on {x['n_images']} images in {x['seconds']:.1f} s")
PYEOF
rm -rf "$W"

# ---- 3. the throughput figures
cd "$REPO/benchmarks"
echo "== training images/s: memory-mapped cache vs tensors already on the device"
$PY train_throughput.py --model efficientnet_b2 --size $CROP --cached $SIZE --device $DEVICE $TT \
  --json "$OUT/train_throughput.json" || echo "train_throughput FAILED"
echo "== evaluation images/s from the cache"
$PY eval_throughput.py --model efficientnet_b2 --size $CROP --device $DEVICE $ET \
  --json "$OUT/eval_throughput.json" || echo "eval_throughput FAILED"
echo "== bulk Grad-CAM vs pytorch-grad-cam (fp32, then bf16 + channels_last)"
$PY heatmap_throughput.py --model efficientnet_b2 --size $SIZE --batch $HM_BATCH --repeats $HM_REPEATS \
  --device $DEVICE --json "$OUT/heatmap_throughput.json" || echo "heatmap_throughput FAILED"
if [ "$DEVICE" = cuda ]; then
  $PY heatmap_throughput.py --model efficientnet_b2 --size $SIZE --batch $HM_BATCH --repeats $HM_REPEATS \
    --device cuda --amp --json "$OUT/heatmap_throughput_amp.json" || echo "heatmap_throughput --amp FAILED"
fi
echo "== cache build images/s: PIL processes vs torchvision's JPEG decoder on $DEVICE"
$PY cache_throughput.py $CT --json "$OUT/cache_throughput.json" || echo "cache_throughput FAILED"
echo "gpu.sh done; figures in $OUT"
