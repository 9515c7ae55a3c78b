#!/usr/bin/env bash
# One prepared GPU check (issues 10 and 23): at most 8 minutes (BUDGET), no network needed.
#
#   OUT=/some/dir bash benchmarks/gpu.sh              # on a GPU machine, from the repository root
#   DEVICE=cpu OUT=/tmp/g bash benchmarks/gpu.sh      # rehearsal on a CPU: every step, small sizes
#
# 1. installs what the GPU image lacks (grad-cam, ttach, snakemake and its dependencies) from the
#    wheels carried in .whl/ (see "Wheels" below), into /tmp/site;
# 2. prints the figures, quickest and most wanted first: bulk Grad-CAM vs pytorch-grad-cam (fp32 and
#    bf16; efficientnet_b2 and a CLIP ViT-B/16 row), training images/s fed from the cache vs from
#    tensors on the device, evaluation images/s (eager and torch.compile), cache build images/s with
#    PIL and with nvJPEG; then every model of config/trueface.yaml at its own settings (training
#    images/s, the CLIP linear probe's frozen-backbone feature pass, inference images/s) and the paper
#    grid projected in GPU-hours from those rates (benchmarks/model_rates.py);
# 3. runs one real training + evaluation + explanation cell through `snakemake` on a synthetic
#    dataset at 256 px (efficientnet_b2 trained on pre-social, tested on pre-social and combined),
#    with controlled fakes, so its explanation-quality job runs the controlled check too.
# Every step has a cap and all share BUDGET seconds (default 480): a slow or hung step is stopped and
# the script goes on; $OUT/steps.txt lists each step as ok, FAILED, STOPPED or SKIPPED.
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
OUT=$(cd "$OUT" && pwd)  # absolute: the steps run from other folders
: > "$OUT/steps.txt"
if [ "$DEVICE" = cuda ]; then
  SIZE=256; CROP=224; REAL=1200; FAKE=300; EPOCHS=3; BATCH=64; CORES=16; HM_BATCH=64; HM_REPEATS=10
  TT="--batch 128 --steps 40 --warmup 5 --images 3072 --loader-workers 6"
  ET="--batch 512 --images 8192 --loader-workers 6 --compile"; CT="--images 96 --size 1024 --jpeg-device cuda"
  VIT=vit_base_patch16_clip_224; MR="--batch 128 --steps 10 --warmup 3 --images 1536 --loader-workers 6"
  CONTROLLED=128
else
  SIZE=64; CROP=56; REAL=120; FAKE=30; EPOCHS=1; BATCH=16; CORES=2; HM_BATCH=8; HM_REPEATS=1
  TT="--batch 16 --steps 3 --warmup 1 --images 64 --loader-workers 1 --rounds 1"
  ET="--batch 64 --images 128 --loader-workers 1"; CT="--images 8 --size 256 --jpeg-device cpu"
  VIT=vit_tiny_patch16_224; MR="--size 64 --batch 8 --steps 2 --warmup 1 --images 32 --loader-workers 1"
  CONTROLLED=16
fi

BUDGET=${BUDGET:-480}  # seconds for the whole script (issue 10: fits in 8 minutes; the install takes seconds)
START=$(date +%s)
# step NAME CAP CMD...: run CMD for at most CAP seconds and at most what is left of BUDGET; a failure,
# a stop at the cap or a skip is printed and listed in $OUT/steps.txt, and the script goes on.
step() {
  local name=$1 cap=$2 left rc=0
  shift 2
  left=$((BUDGET - ($(date +%s) - START)))
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name"
  if [ "$cap" -lt 15 ]; then
    echo "SKIPPED: $name (under 15 s of the ${BUDGET} s budget left)" | tee -a "$OUT/steps.txt"; return 0
  fi
  timeout -k 10 "$cap" "$@" || rc=$?
  case $rc in
    0) echo "ok: $name" >> "$OUT/steps.txt" ;;
    124|137) echo "STOPPED after $cap s: $name" | tee -a "$OUT/steps.txt" ;;
    *) echo "FAILED (exit $rc): $name" | tee -a "$OUT/steps.txt" ;;
  esac
}

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

# ---- 2. the throughput figures, quickest and most wanted first (bulk Grad-CAM is issue 5's figure).
# Each step runs under a cap and within what is left of BUDGET seconds (the whole script), so a slow
# or hung step costs its cap, not the figures after it; skipped and stopped steps are named in $OUT.
cd "$REPO/benchmarks"
step "bulk Grad-CAM vs pytorch-grad-cam, fp32" 90 \
  $PY heatmap_throughput.py --model efficientnet_b2 --vit $VIT --size $SIZE --batch $HM_BATCH --repeats $HM_REPEATS \
  --device $DEVICE --json "$OUT/heatmap_throughput.json"
if [ "$DEVICE" = cuda ]; then
  step "bulk Grad-CAM (bf16 + channels_last) vs pytorch-grad-cam" 90 \
    $PY heatmap_throughput.py --model efficientnet_b2 --vit $VIT --size $SIZE --batch $HM_BATCH --repeats $HM_REPEATS \
    --device cuda --amp --json "$OUT/heatmap_throughput_amp.json" --profile "$OUT/heatmap_profile.txt"
fi
step "training images/s: memory-mapped cache vs tensors already on the device" 120 \
  $PY train_throughput.py --model efficientnet_b2 --size $CROP --cached $SIZE --device $DEVICE $TT \
  --json "$OUT/train_throughput.json"
step "evaluation images/s from the cache" 180 \
  $PY eval_throughput.py --model efficientnet_b2 --size $CROP --device $DEVICE $ET --json "$OUT/eval_throughput.json"
step "cache build images/s: PIL processes vs torchvision's JPEG decoder on $DEVICE" 60 \
  $PY cache_throughput.py $CT --json "$OUT/cache_throughput.json"
step "every paper model's rates and the paper grid in GPU-hours" 120 \
  $PY model_rates.py --config "$REPO/config/trueface.yaml" --device $DEVICE $MR --json "$OUT/model_rates.json" \
  --cache-json "$OUT/cache_throughput.json" --heatmap-json "$OUT/heatmap_throughput.json"  # fp32: explain.amp is off by default

cd "$REPO"
# ---- 3. one cell through snakemake, in a copy of the workflow
W=$(mktemp -d)
mkdir -p "$W/repo"
cp -r Snakefile environment.yml workflow config src "$W/repo/"
cat > "$W/repo/gpu.yaml" <<EOF
dataset: synthetic
data:
  source: synthetic
  synthetic: {image_size: $SIZE, real: $REAL, fake: {stylegan: {"0.5": $FAKE, "0.7": $FAKE}, stylegan2: {"0.5": $FAKE, "1": $FAKE}}, controlled: $CONTROLLED}
train: {center_crop: $SIZE, image_size: $CROP, epochs: $EPOCHS, batch_size: $BATCH, max_train_images: null}
models: {efficientnet_b2: {}}
train_sets: [presocial]
test_sets: [presocial, combined]
grid: [{models: [efficientnet_b2], train_sets: [presocial]}]
compute: {train_threads: $CORES, predict_threads: $CORES, cache_workers: $CORES, device: $DEVICE}
explain: {cells: [{train_sets: [presocial], test_sets: [presocial]}], n_images: 64, panels: 2, actmax_steps: 32}
xai: {n_images: 16, steps: 8, controlled_images: $CONTROLLED}
EOF
R=results/synthetic
T0=$(date +%s%N)
cd "$W/repo"
step "one efficientnet_b2 cell through snakemake" 420 $PY -m snakemake \
  $R/metrics/efficientnet_b2/presocial/presocial.json $R/metrics/efficientnet_b2/presocial/combined.json \
  $R/xai_metrics/efficientnet_b2/presocial/presocial.json \
  --cores "$CORES" --resources gpu=1 --configfile gpu.yaml --quiet rules > "$OUT/snakemake_cell.txt" 2>&1
T1=$(date +%s%N)
cd "$REPO"
if ! grep -q "^ok: one efficientnet_b2 cell" "$OUT/steps.txt"; then
  tail -40 "$OUT/snakemake_cell.txt"; cp -r "$W/repo/$R/logs" "$OUT/cell_logs" 2>/dev/null || true
fi
cp -r "$W/repo/$R/benchmarks" "$OUT/snakemake_benchmarks" 2>/dev/null || true
$PY - "$W/repo/$R" "$T0" "$T1" <<'PYEOF' | tee "$OUT/snakemake_cell_summary.txt"
import json, os, sys
r, wall = sys.argv[1], (int(sys.argv[3]) - int(sys.argv[2])) / 1e9
def read(path):
    if os.path.exists(f"{r}/{path}"):
        return json.load(open(f"{r}/{path}"))
    print(f"(not written: {path})")
print(f"snakemake cell (data, manifest, cache, train, predict, metrics, explain, xai): {wall:.1f} s")
if t := read("models/efficientnet_b2/presocial/train.json"):
    print(f"train on {t['device']}: {t['n_train']} images x {t['epochs']} epochs, {t['images_per_s']:.0f} images/s, "
          f"bf16={t['amp_bf16']}, channels_last={t['channels_last']}")
for part in ("presocial", "combined"):
    if m := read(f"metrics/efficientnet_b2/presocial/{part}.json"):
        print(f"efficientnet_b2/presocial -> {part}: accuracy {m['accuracy']:.4f}, F1 {m['f1']:.4f}, n={m['n']}")
if x := read("xai_metrics/efficientnet_b2/presocial/presocial.json"):
    print(f"explanation quality: {len(x['methods'])} methods on {x['n_images']} images in {x['seconds']:.1f} s")
    if c := x.get("controlled"):
        pg = c["methods"]["oracle"]["pointing_game"]
        print(f"controlled check: {c['n']} controlled fakes, {sum(c['decided'])} decided by their region; "
              f"oracle pointing game {sum(pg) / max(len(pg), 1):.2f}")
PYEOF
rm -rf "$W"

echo "gpu.sh done; figures in $OUT"
