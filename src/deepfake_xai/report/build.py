"""One call that writes a dataset's whole report folder: tables, figures and a README saying what ran."""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from ..environment import PACKAGES, git_commit, versions
from ..io import write_text
from . import figures
from .calibration import CALIBRATION_FILES, RELIABILITY_FIGURE, write_calibration
from .generalization import GENERALIZATION_FILES, TRANSFER_FILES, write_generalization
from .tables import ReportInputError, build_tables, display, load_metrics, load_train_summaries, write_tables


def _sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rel(path: str | Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), start.resolve())


def report_files(out_dir: str | Path, models: list[str]) -> list[str]:
    """Every file :func:`build_report` writes, for rules that must declare them."""
    out = Path(out_dir)
    files = [out / "tables" / f"table{n}.{ext}" for n in (1, 2, 3, 4) for ext in ("md", "csv", "tex")]
    files += [out / "tables" / "matrices.md", out / "tables" / "matrices.csv",
              out / "figures" / "training_curves.png"]
    files += [out / "tables" / name for name in (*GENERALIZATION_FILES, *TRANSFER_FILES, *CALIBRATION_FILES)]
    files += [out / "figures" / RELIABILITY_FIGURE]
    files += [out / "figures" / f"{kind}_{m}.png" for m in models for kind in ("matrix", "confusion")]
    return [str(f) for f in files + [out / "README.md"]]


def build_report(*, metrics_files: Iterable[str | Path], train_files: Iterable[str | Path],
                 out_dir: str | Path, dataset: str, models: list[str], train_sets: list[str],
                 test_sets: list[str], config_files: Iterable[str | Path] = (),
                 results_dir: str | Path | None = None, explain_files: Iterable[str | Path] = (),
                 paper_csv: str | Path | None = None, transfer_files: Iterable[str | Path] = (),
                 families: dict[str, str] | None = None, prediction_files: Iterable[str | Path] = (),
                 validation_files: Iterable[str | Path] = ()) -> list[Path]:
    """Write tables/, figures/ and README.md under ``out_dir`` from the given stage outputs only."""
    from .tables import paper_rows

    out_dir = Path(out_dir)
    metrics_files, train_files, config_files = list(metrics_files), list(train_files), list(config_files)
    missing = [str(f) for f in config_files if not Path(f).is_file()]
    if missing:  # before any file is written: the README records each config file's hash
        raise ReportInputError(f"config file(s) not found: {', '.join(missing)}; give the config files the run "
                         "merged, in order (or none)")
    metrics = load_metrics(metrics_files)
    summaries = load_train_summaries(train_files)
    results = Path(results_dir) if results_dir else Path("results") / dataset
    tables = build_tables(metrics, summaries, paper_rows(paper_csv),
                          metrics_pattern=f"{results}/metrics/{{model}}/{{train_set}}/{{test_set}}.json",
                          train_pattern=f"{results}/models/{{model}}/{{train_set}}/train.json")
    written = write_tables(tables, out_dir / "tables")
    written += figures.write_matrices(metrics, models, train_sets, test_sets, out_dir / "tables")
    transfer_files = list(transfer_files)
    written += write_generalization(metrics_files, summaries, transfer_files, out_dir / "tables", families or {})
    figs = out_dir / "figures"
    written += write_calibration(metrics, prediction_files, validation_files, out_dir / "tables", figs)
    logs = {key: Path(s["_path"]).with_name("log.csv") for key, s in summaries.items()}
    written.append(figures.training_curves_figure(logs, figs / "training_curves.png"))
    for m in models:
        written.append(figures.matrix_figure(metrics, m, train_sets, test_sets, figs / f"matrix_{m}.png"))
        written.append(figures.confusion_figure(metrics, m, train_sets, test_sets, figs / f"confusion_{m}.png"))
    readme = out_dir / "README.md"
    write_text(readme, readme_text(tables=tables, summaries=summaries, n_cells=len(metrics), out_dir=out_dir,
                                   dataset=dataset, models=models, config_files=config_files,
                                   explain_files=list(explain_files)))
    written.append(readme)
    return written


def _versions_text(summaries: dict) -> str:
    """The package versions the train.json files record (each package's versions, if they differ)."""
    seen: dict[str, set] = {}
    for s in summaries.values():
        for name, v in (s.get("versions") or {"torch": s.get("torch")}).items():
            if v:
                seen.setdefault(name, set()).add(v)
    order = [*PACKAGES, "commit"]
    return ", ".join(f"{name} {' / '.join(sorted(seen[name]))}" for name in sorted(seen, key=lambda n: (
        order.index(n) if n in order else len(order), n))) or "unknown (no train.json)"


def readme_text(*, tables, summaries: dict, n_cells: int, out_dir: Path, dataset: str, models: list[str],
                config_files: list, explain_files: list) -> str:
    """What was run (config, dataset, commit, device, time) and where each table and figure is."""
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    devices = sorted({s.get("device", "?") for s in summaries.values()})
    trained_with = _versions_text(summaries)
    train_s = sum(float(s.get("seconds", 0.0)) for s in summaries.values())
    lines = [f"# Report: {dataset}", "",
             f"Generated {now} by deepfake-xai from commit `{git_commit()}`.", "",
             "## What was run", ""]
    for i, config_file in enumerate(config_files):  # merged in this order
        role = "Config" if i == 0 else "  then merged"
        lines.append(f"- {role}: `{config_file}` (sha256 `{_sha256(config_file)[:16]}`)")
    lines += [f"- Dataset: `{dataset}`",
              f"- Trainings: {len(summaries)} (model x train set); evaluated cells: {n_cells}",
              f"- Device(s): {', '.join(devices) or 'none'}",
              f"- Trained with: {trained_with}",
              f"- This report: {', '.join(f'{k} {v}' for k, v in versions().items() if v)}",
              f"- Training time: {train_s / 60:.1f} min in all (sum of train.json `seconds`)", ""]
    if summaries:
        lines += ["| Model | Train set | Epochs (best) | Best val balanced acc. | Params (M) | Seconds | Device |",
                  "|---|---|---|---|---|---|---|"]
        for (m, tr), s in summaries.items():
            lines.append(f"| {display(m)} | {display(tr)} | {s['epochs']} ({s['best_epoch']}) | "
                         f"{100 * s['best_val_balanced_accuracy']:.1f} | {s['parameters'] / 1e6:.2f} | "
                         f"{s['seconds']:.0f} | {s['device']} |")
        lines.append("")
    lines += ["## Tables (this run beside the paper)", ""]
    for t in tables:
        n_total = len(t.rows) * len(t.columns)
        n_missing = sum(1 for row in t.rows for c in t.columns if t.cells[row, c].missing)
        lines.append(f"- {t.title}: [md](tables/table{t.number}.md), [csv](tables/table{t.number}.csv), "
                     f"[tex](tables/table{t.number}.tex); {n_total - n_missing} of {n_total} cells built")
    lines += ["- Every train set x test set cell (accuracy, F1, AUC): [md](tables/matrices.md), "
              "[csv](tables/matrices.csv)",
              "- Accuracy per generator, held-out generators marked: [md](tables/generalization.md), "
              "[csv](tables/generalization.csv)",
              "- Cross-dataset cells (models tested on other datasets): [md](tables/transfer.md), "
              "[csv](tables/transfer.csv)",
              "- Calibration (ECE), a threshold chosen on pre-social validation carried to each platform, McNemar "
              "before/after sharing: [md](tables/calibration.md), [csv](tables/calibration.csv), "
              f"[reliability diagrams](figures/{RELIABILITY_FIGURE})", "",
              "## Figures", "",
              "- Training curves: [figures/training_curves.png](figures/training_curves.png)"]
    for m in models:
        lines.append(f"- {display(m)}: [train x test matrix](figures/matrix_{m}.png), "
                     f"[confusion matrices](figures/confusion_{m}.png)")
    if explain_files:
        lines += ["", "## Heatmaps (explain stage)", ""]
        lines += [f"- [{Path(p).as_posix()}]({_rel(p, out_dir)})" for p in explain_files]
    lines += ["", "## Rebuild", "",
              "```", "snakemake --cores 2            # everything, incrementally",
              f"snakemake --report reports/{dataset}/report.html", "```", ""]
    return "\n".join(lines)

