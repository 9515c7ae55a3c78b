"""Bulk Grad-CAM images/s vs pytorch-grad-cam's GradCAM on the same model and batch, in one run: the
CNN given by --model and a ViT row (--vit; its token features laid on the patch grid by both sides).

The bulk path keeps activations, gradients and maps on the device (one forward + backward per
batch, batched upsampling and normalization); pytorch-grad-cam copies them to the CPU and resizes
each map with OpenCV. Prints both rates, the ratio (target on a GPU: >= 4x), and the largest
difference between the two maps last.

    python benchmarks/heatmap_throughput.py                                   # CPU defaults
    python benchmarks/heatmap_throughput.py --model efficientnet_b2 --size 256 --batch 64 --repeats 10
    python benchmarks/heatmap_throughput.py --vit vit_base_patch16_clip_224     # CLIP's ViT-B/16 row
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from common import device_of, parser

from deepfake_xai.explain import get_method
from deepfake_xai.explain.base import as_feature_map
from deepfake_xai.models import REGISTRY, create_model, get_module, pooled_feature_layer


def timed(fn, repeats: int, cuda: bool) -> tuple[float, object]:
    out = fn()  # warm-up
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats, out


def profile(fn, cuda: bool, out: Path) -> None:
    """torch.profiler's table of one bulk call, the 25 costliest operators by device time (CPU time on
    a CPU), written to ``out``."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with torch_profile(activities=activities, record_shapes=False) as prof:
        fn()
        if cuda:
            torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cuda_time_total" if cuda else "cpu_time_total", row_limit=25)
    out.write_text(table + "\n")
    print(f"  profile of one bulk call -> {out}")


def row(arch: str, args, dev) -> dict:
    """One model's figures: both rates, their ratio and the largest difference of the maps."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from deepfake_xai.explain import Context

    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    token_model = arch.startswith(("vit_", "deit_"))
    model = create_model(arch, model_args={"img_size": args.size} if token_model else None).to(dev).eval()
    layer_name = REGISTRY[arch].target_layer if arch in REGISTRY else pooled_feature_layer(model, args.size)
    layer = get_module(model, layer_name)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    targets = torch.randint(0, 2, (args.batch,), device=dev)
    cam = GradCAM(model=model, target_layers=[layer], reshape_transform=lambda t: as_feature_map(t, model))
    ref_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    t_ref, ref = timed(lambda: cam(input_tensor=x, targets=ref_targets), args.repeats, cuda)
    gradcam = get_method("gradcam")
    bulk_model, bulk_x = model, x
    if args.amp and cuda:
        bulk_model = model.to(memory_format=torch.channels_last)
        bulk_x = x.contiguous(memory_format=torch.channels_last)

    def bulk():
        ctx = Context.capture(bulk_model, bulk_x, targets, layer, need_gradients=True, need_input_grad=False,
                              amp=args.amp)
        return gradcam.from_context(ctx)

    t_bulk, mine = timed(bulk, args.repeats, cuda)
    if args.profile:  # where the bulk path's time goes (issue 23: below 4.5x on efficientnet_b2)
        profile(bulk, cuda, Path(args.profile).with_suffix(f".{arch}.txt"))
    diff = float((mine.cpu() - torch.from_numpy(ref)).abs().max())
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu ({args.threads} threads)"
    figures = {"model": arch, "layer": layer_name, "size": args.size, "batch": args.batch, "device": name,
               "amp": args.amp, "bulk_images_per_s": round(args.batch / t_bulk, 1),
               "pytorch_grad_cam_images_per_s": round(args.batch / t_ref, 1),
               "ratio": round(t_ref / t_bulk, 2), "max_abs_difference": diff}
    print(f"{arch} ({layer_name}), {args.size} px, batch {args.batch}, on {name}, bulk {'bf16' if args.amp else 'fp32'}")
    print(f"  bulk Grad-CAM: {args.batch / t_bulk:.1f} images/s")
    print(f"  pytorch-grad-cam GradCAM: {args.batch / t_ref:.1f} images/s")
    print(f"  ratio bulk / pytorch-grad-cam: {t_ref / t_bulk:.2f}x; max |difference| {diff:.2e}", flush=True)
    return figures


def main() -> None:
    p = parser(__doc__, model="efficientnet_b0", size=64, batch=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="bulk forward in bf16 + channels_last (CUDA)")
    p.add_argument("--profile", help="also write torch.profiler's table of one bulk call to PROFILE.<model>.txt")
    p.add_argument("--vit", default="vit_tiny_patch16_224",
                   help="the transformer row (built for --size px; 'none' to leave it out)")
    args = p.parse_args()
    dev = device_of(args)
    rows = [row(arch, args, dev) for arch in (args.model, args.vit) if arch and arch != "none"]
    if args.json:  # the CNN row's figures at the top level (as before), every row under "rows"
        Path(args.json).write_text(json.dumps({**rows[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
