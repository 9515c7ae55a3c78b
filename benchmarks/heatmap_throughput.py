"""Bulk Grad-CAM images/s vs pytorch-grad-cam's GradCAM on the same model and batch, in one run.

The bulk path keeps activations, gradients and maps on the device (one forward + backward per
batch, batched upsampling and normalization); pytorch-grad-cam copies them to the CPU and resizes
each map with OpenCV. Prints both rates, the ratio (target on a GPU: >= 4x), and the largest
difference between the two maps last.

    python benchmarks/heatmap_throughput.py                                   # CPU defaults
    python benchmarks/heatmap_throughput.py --model efficientnet_b2 --size 256 --batch 64 --repeats 10
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from common import device_of, parser

from deepfake_xai.explain import get_method
from deepfake_xai.models import REGISTRY, create_model, get_module


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


def main() -> None:
    p = parser(__doc__, model="efficientnet_b0", size=64, batch=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--amp", action="store_true", help="bulk forward in bf16 + channels_last (CUDA)")
    args = p.parse_args()
    dev = device_of(args)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = create_model(args.model).to(dev).eval()
    layer = get_module(model, REGISTRY[args.model].target_layer)
    x = torch.randn(args.batch, 3, args.size, args.size, device=dev)
    targets = torch.randint(0, 2, (args.batch,), device=dev)

    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = GradCAM(model=model, target_layers=[layer])
    ref_targets = [ClassifierOutputTarget(int(t)) for t in targets]
    t_ref, ref = timed(lambda: cam(input_tensor=x, targets=ref_targets), args.repeats, cuda)
    from deepfake_xai.explain import Context

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
    diff = float((mine.cpu() - torch.from_numpy(ref)).abs().max())
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu ({args.threads} threads)"
    figures = {"model": args.model, "size": args.size, "batch": args.batch, "device": name, "amp": args.amp,
               "bulk_images_per_s": round(args.batch / t_bulk, 1),
               "pytorch_grad_cam_images_per_s": round(args.batch / t_ref, 1),
               "ratio": round(t_ref / t_bulk, 2), "max_abs_difference": diff}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    print(f"{args.model}, {args.size} px, batch {args.batch}, on {name}, bulk {'bf16' if args.amp else 'fp32'}")
    print(f"bulk Grad-CAM: {args.batch / t_bulk:.1f} images/s")
    print(f"pytorch-grad-cam GradCAM: {args.batch / t_ref:.1f} images/s")
    print(f"ratio bulk / pytorch-grad-cam: {t_ref / t_bulk:.2f}x; max |difference| {diff:.2e}")


if __name__ == "__main__":
    main()
