"""Stage actmax: activation maximization of a trained model, one optimized input per class."""

from __future__ import annotations

import argparse

from .spec import Option, weights_inputs

HELP = "activation maximization: one optimized input per class"
EXAMPLE = ("deepfake-xai actmax --weights models/m/presocial/model.safetensors --settings-json '{...}' "
           "--out actmax.png")
GPU_OPTION = "device"
OPTIONS = (
    *weights_inputs("compute.predict_threads"),
    Option("--steps", "optimization steps", type=int, default=96, config="explain.actmax_steps"),
    Option("--seed", "seed of the starting noise", type=int, default=0, config="explain.seed"),
    Option("--out", "the PNG (left real, right fake)", required=True),
)


def run(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from ..explain.actmax import maximize, to_image
    from ..explain.panels import save_png
    from ..runtime import explained_model, input_stats

    runner, _ = explained_model(args.weights, args.settings_json, args.device, args.threads)
    x, trace = maximize(runner.model, [0, 1], runner.image_size, steps=args.steps, seed=args.seed,
                        device=runner.device)
    tiles = [np.asarray(Image.fromarray(to_image(x[i:i + 1], *input_stats(args.settings_json))).resize((128, 128)))
             for i in range(2)]
    traces = {name: [round(float(trace[0, i]), 4), round(float(trace[-1, i]), 4)]
              for i, name in enumerate(("real", "fake"))}
    save_png(Image.fromarray(np.concatenate(tiles, axis=1)), args.out)
    print(f"activation maximization (left real, right fake) -> {args.out}; logit first/last step: {traces}")
