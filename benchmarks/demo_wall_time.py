"""Wall time of `make demo` (the whole DAG on the embedded synthetic dataset, then report.html) from a
clean tree, run exactly as `make demo` runs it: one `snakemake --cores N`, then `snakemake --report`.
Each rule's share of the job time, and the moment the last evaluation job finished (data + training
+ evaluation done), are read from Snakemake's benchmark files.

    .venv/bin/python benchmarks/demo_wall_time.py [--cores 2] [--keep]

Copies the tracked files (`git ls-files`) into a temporary folder, so the checkout's own results/
are untouched, and runs the installed snakemake there (install first: `make install`). Prints the
figures last.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def tracked_copy(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        src = REPO / name
        if src.is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


def rule_seconds(results: Path) -> tuple[dict[str, tuple[int, float, float]], dict[str, float]]:
    """rule -> (jobs, summed wall seconds, slowest job's seconds), and rule -> when its last job
    ended (the benchmark file's modification time), from the benchmark TSVs of every dataset below
    ``results`` (the demo's and its transfer datasets')."""
    out: dict[str, list] = defaultdict(lambda: [0, 0.0, 0.0])
    last_end: dict[str, float] = defaultdict(float)
    for tsv in sorted(results.glob("*/benchmarks/**/*.tsv")):
        rows = list(csv.DictReader(tsv.open(), delimiter="\t"))
        if not rows:
            continue
        rel = tsv.relative_to(results).relative_to(tsv.relative_to(results).parts[0], "benchmarks")
        rule = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if rule == "transfer":  # transfer/<dataset>/<predict|pool|metrics>/...
            rule = f"transfer_{rel.parts[2]}"
        s = float(rows[0]["s"])
        agg = out[rule]
        agg[0] += 1
        agg[1] += s
        agg[2] = max(agg[2], s)
        last_end[rule] = max(last_end[rule], tsv.stat().st_mtime)
    return {k: tuple(v) for k, v in out.items()}, dict(last_end)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--keep", action="store_true", help="keep the temporary tree and print its path")
    args = p.parse_args()
    if not SNAKEMAKE.exists():
        raise SystemExit(f"error: {SNAKEMAKE} not found; run `make install` first")
    wd = Path(tempfile.mkdtemp(prefix="demo-bench-"))
    try:
        tracked_copy(wd)
        t0, wall0 = time.perf_counter(), time.time()
        subprocess.run([str(SNAKEMAKE), "--cores", str(args.cores), "--quiet", "all"], cwd=wd, check=True)
        t_dag = time.perf_counter() - t0
        subprocess.run([str(SNAKEMAKE), "--report", "reports/synthetic/report.html", "--quiet", "all"],
                       cwd=wd, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        per_rule, last_end = rule_seconds(wd / "results")
        t_eval = max(last_end[r] for r in ("train", "metrics")) - wall0
        print(f"{'rule':<18} {'jobs':>5} {'job-seconds':>12} {'slowest':>8}")
        for rule, (n, total, slowest) in sorted(per_rule.items(), key=lambda kv: -kv[1][1]):
            print(f"{rule:<18} {n:>5} {total:>12.1f} {slowest:>8.1f}")
        jobs = sum(v[0] for v in per_rule.values())
        busy = sum(v[1] for v in per_rule.values())
        print(f"jobs: {jobs}; job-seconds: {busy:.1f} on {args.cores} cores "
              f"(ideal wall {busy / args.cores:.1f} s)")
        print(f"last training or evaluation job done after {t_eval:.1f} s ({t_eval / 60:.2f} min; explain jobs "
              "run alongside)")
        print(f"snakemake --cores {args.cores}: {t_dag:.1f} s; snakemake --report: {wall - t_dag:.1f} s")
        print(f"make demo after install: {wall:.1f} s ({wall / 60:.2f} min; target 5 min)")
    finally:
        if args.keep:
            print(f"tree kept: {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    main()
