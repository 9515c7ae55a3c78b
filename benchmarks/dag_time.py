"""Time of `snakemake -n` for the full TrueFace grid (config/trueface.yaml: 35 trainings, 175 cells)
with a full-size stand-in manifest (210,000 rows) in place. Target: 10 s or less on this machine.

    .venv/bin/python benchmarks/dag_time.py [--rows 210000] [--repeat 3]

Works in a temporary copy of the tracked files: a stand-in dataset root (a few generated images in
the TrueFace layout, so the config validates), the manifest written as the manifest rule would, and
marked up to date, so the dry run plans caches, trainings, cells, heatmaps and reports. Prints the
figures last.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
sys.path.insert(0, str(REPO / "benchmarks"))
from demo_wall_time import tracked_copy  # noqa: E402


def standin_manifest(rows: int, seed: int = 0) -> pd.DataFrame:
    """A manifest with TrueFace's proportions: 70k pre-social real, 80k pre-social fake, 60k post-social."""
    from deepfake_xai.data.manifest import MANIFEST_COLUMNS

    rng = np.random.default_rng(seed)
    platform = rng.choice(["presocial", "facebook", "telegram", "twitter"], size=rows, p=[5 / 7, 2 / 21, 2 / 21, 2 / 21])
    label = rng.integers(0, 2, rows)
    split = rng.choice(["train", "val", "test"], size=rows, p=[0.65, 0.15, 0.2])
    ids = np.char.add("img", np.arange(rows).astype(str))
    df = pd.DataFrame({
        "image_id": ids, "path": np.char.add(ids, ".png"), "label": label,
        "generator": np.where(label == 1, "stylegan2", "ffhq"), "psi": np.where(label == 1, 1.0, np.nan),
        "platform": platform, "source_id": ids, "split": split, "width": 1024, "height": 1024,
        "format": "PNG", "mode": "RGB", "bytes": 1_500_000,
    })
    for k in ("evidence_x0", "evidence_y0", "evidence_x1", "evidence_y1"):
        df[k] = np.nan
    return df[MANIFEST_COLUMNS]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=210_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    from deepfake_xai.data.manifest import write_manifest
    from deepfake_xai.data.synth import SynthConfig, generate

    wd = Path(tempfile.mkdtemp(prefix="dag-bench-"))
    try:
        tracked_copy(wd)
        root = wd / "standin"
        generate(root, SynthConfig.from_dict({"real": 8, "image_size": 32, "render_scale": 2,
                                              "fake": {"stylegan2": {1.0: 4}}}), progress=False)
        (wd / "standin.yaml").write_text(f"data: {{root: {root}}}\n")
        t0 = time.perf_counter()
        manifest = standin_manifest(args.rows)
        write_manifest(manifest, wd / "results/trueface/manifest.parquet", "trueface")
        t_manifest = time.perf_counter() - t0
        for name in ("rejected.parquet", "manifest_summary.csv"):
            (wd / "results/trueface" / name).write_text("")
        os.utime(root)  # the root older than the manifest: the manifest is up to date
        later = time.time() + 5
        for f in (wd / "results/trueface").iterdir():
            os.utime(f, (later, later))
        cmd = [str(SNAKEMAKE), "-n", "--quiet", "rules", "--configfile", "config/trueface.yaml", "standin.yaml"]
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=wd, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise SystemExit(proc.stdout[-2000:] + proc.stderr[-3000:])
        table = proc.stdout.split("Job stats:")[-1].strip().splitlines()  # every rule's job count
        print("\n".join(dict.fromkeys(table)))
        print(f"stand-in manifest: {args.rows} rows written in {t_manifest:.1f} s")
        print(f"snakemake -n, full TrueFace grid: best {min(times):.2f} s, median {sorted(times)[len(times) // 2]:.2f} s "
              f"over {args.repeat} runs (target 10 s)")
    finally:
        shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
