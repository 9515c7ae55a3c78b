"""The paper's four tables rebuilt from this run's metrics files, beside the paper's numbers.

The shape of each table (its rows, its columns and their order) is read from the paper's CSV
(``data/paper_tables.csv``, long format), so the tables follow the paper exactly and nothing about
their layout is hard-coded here. A cell whose metrics file was not built is reported as missing,
never filled in.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..io import write_text
from ..sets import COMBINED

PAPER_CSV = "paper_tables.csv"


class ReportInputError(ValueError):
    """A file given to the report is missing or is not what it should be (named in the message)."""


TITLES = {
    1: "Table 1. Trained and tested on pre-social images",
    2: "Table 2. Trained on the combined set (pre-social and the three platforms)",
    3: "Table 3. Trained on one platform, tested on each part and overall",
    4: "Table 4. Ablation: EfficientNet-B0/B1/B2 trained on Telegram",
}
MODEL_NAMES = {
    "vgg19": "VGG19", "resnet50": "ResNet50", "densenet121": "DenseNet121",
    "mnasnet_100": "MnasNet", "efficientnet_b0": "EfficientNet-B0",
    "efficientnet_b1": "EfficientNet-B1", "efficientnet_b2": "EfficientNet-B2",
}
SET_NAMES = {
    "presocial": "Pre-social", "facebook": "Facebook", "telegram": "Telegram", "twitter": "Twitter",
    "whatsapp": "WhatsApp", "combined": "Combined", "overall": "Overall", "average": "Average",
}
METRIC_NAMES = {"params_millions": "Params (M)", "accuracy": "Accuracy", "f1": "F1"}
# The paper's "overall" column is this run's pooled "combined" test set; the paper does not say how
# it pooled (see data/README.md), so its numbers may differ by construction.
TEST_SET_ALIASES = {"overall": COMBINED}
NOTES = {
    1: "Paper parameter counts are for 1000-class ImageNet heads; this run's models have a 2-class head.",
    3: "The paper's 'overall' is compared with this run's pooled combined test set; the paper does not "
       "say how its overall was pooled.",
    4: "'Average' is the mean of the five columns before it, as in the paper (no interval).",
}


def display(name: str) -> str:
    return MODEL_NAMES.get(name) or SET_NAMES.get(name) or METRIC_NAMES.get(name) or name


@dataclass(frozen=True)
class Column:
    test_set: str
    metric: str

    @property
    def label(self) -> str:
        return f"{self.test_set}:{self.metric}"


@dataclass
class Cell:
    """One table cell: this run's value (percent, or millions for parameters), its interval, the paper's."""

    value: float | None
    ci: tuple[float, float] | None
    paper: float | None
    missing: str | None = None  # the metrics file that was not built

    @property
    def diff(self) -> float | None:
        if self.value is None or self.paper is None:
            return None
        return self.value - self.paper


@dataclass
class Table:
    number: int
    title: str
    columns: list[Column]
    column_labels: list[str]
    rows: list[tuple[str, str]]  # (train_set, model) in the paper's order
    cells: dict[tuple[tuple[str, str], Column], Cell] = field(default_factory=dict)
    note: str | None = None

    @property
    def column_keys(self) -> list[str]:
        """Machine names of the columns: the metric where the test set is fixed, else the test set."""
        one_test_set = len({c.test_set for c in self.columns}) == 1
        return [c.metric if one_test_set else c.test_set for c in self.columns]

    @property
    def missing(self) -> list[str]:
        """Metrics files this table needs that were not given, in table order, without repeats."""
        seen: list[str] = []
        for row in self.rows:
            for col in self.columns:
                m = self.cells[row, col].missing
                if m and m not in seen:
                    seen.append(m)
        return seen


def paper_rows(path: str | Path | None = None) -> list[dict]:
    """The paper's values as dicts (table, train_set, model, test_set, metric, value)."""
    if path is None:
        text = resources.files(__package__).joinpath("data", PAPER_CSV).read_text()
    else:
        text = Path(path).read_text()
    rows = list(csv.DictReader(text.splitlines()))
    need = {"table", "train_set", "model", "test_set", "metric", "value"}
    if not rows or not need <= set(rows[0]):
        raise ReportInputError(f"{path or PAPER_CSV}: expected columns {sorted(need)}")
    for i, r in enumerate(rows, start=2):
        try:
            r["table"] = int(r["table"])
            r["value"] = float(r["value"])
        except ValueError:
            raise ReportInputError(f"{path or PAPER_CSV}, line {i}: table {r['table']!r} and value {r['value']!r} "
                                   "must be numbers") from None
    return rows


def _unique(items: Iterable) -> list:
    out: list = []
    for it in items:
        if it not in out:
            out.append(it)
    return out


def layouts(paper: list[dict]) -> list[Table]:
    """Empty tables in the paper's shape: rows and columns in the order they first appear."""
    tables = []
    for number in _unique(r["table"] for r in paper):
        rows_ = [r for r in paper if r["table"] == number]
        columns = _unique(Column(r["test_set"], r["metric"]) for r in rows_)
        one_test_set = len({c.test_set for c in columns}) == 1
        labels = [display(c.metric if one_test_set else c.test_set) for c in columns]
        tables.append(Table(number, TITLES.get(number, f"Table {number}"), columns, labels,
                            _unique((r["train_set"], r["model"]) for r in rows_), note=NOTES.get(number)))
    return tables


def metrics_key(metrics: Mapping) -> tuple[str, str, str]:
    return metrics["model"], metrics["train_set"], metrics["test_set"]


def _read_json(path, writer: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ReportInputError(f"{path}: not valid JSON ({err}); rebuild it with `{writer}`") from None
    if not isinstance(data, dict):
        raise ReportInputError(f"{path}: not a JSON object; rebuild it with `{writer}`")
    return data


def load_metrics(paths: Iterable[str | Path]) -> dict[tuple[str, str, str], dict]:
    """Metrics files keyed by (model, train set, test set), read from the fields inside each file."""
    out = {}
    for p in paths:
        data = _read_json(p, "deepfake-xai metrics")
        try:
            out[metrics_key(data)] = {**data, "_path": str(p)}
        except KeyError as err:
            raise ReportInputError(f"{p}: not a metrics file (no {err.args[0]!r} field); "
                             "give the files written by `deepfake-xai metrics`") from None
    return out


def load_train_summaries(paths: Iterable[str | Path]) -> dict[tuple[str, str], dict]:
    """train.json files keyed by (model, train set), each with ``_path`` (its log.csv sits beside it).

    The model is the config's name (two config models may share an architecture); files written
    before train.json recorded it fall back to the architecture."""
    out = {}
    for p in paths:
        data = _read_json(p, "deepfake-xai train")
        try:
            key = (data.get("model") or data["arch"], data["train_set"])
        except KeyError as err:
            raise ReportInputError(f"{p}: not a train.json (no {err.args[0]!r} field)") from None
        if key in out:
            raise ReportInputError(f"{p} and {out[key]['_path']} are both training runs of {key[0]} on {key[1]}; "
                             "give one train.json per (model, train set)")
        out[key] = {**data, "_path": str(p)}
    return out


def _metric_cell(metrics: dict | None, metric: str, paper: float | None, expected: str) -> Cell:
    if metrics is None:
        return Cell(None, None, paper, missing=expected)
    value = metrics.get(metric)
    ci = (metrics.get("ci95") or {}).get(metric)
    return Cell(None if value is None else 100.0 * value,
                None if ci is None else (100.0 * ci[0], 100.0 * ci[1]), paper)


def build_tables(metrics: Mapping[tuple[str, str, str], dict],
                 train_summaries: Mapping[tuple[str, str], dict] | None = None,
                 paper: list[dict] | None = None,
                 metrics_pattern: str = "metrics/{model}/{train_set}/{test_set}.json",
                 train_pattern: str = "models/{model}/{train_set}/train.json") -> list[Table]:
    """Fill the paper's tables with this run's values. The patterns name a missing cell's file."""
    paper = paper if paper is not None else paper_rows()
    train_summaries = train_summaries or {}
    paper_value = {(r["table"], r["train_set"], r["model"], r["test_set"], r["metric"]): r["value"]
                   for r in paper}
    tables = layouts(paper)
    for table in tables:
        for train_set, model in table.rows:
            row = (train_set, model)
            for col in table.columns:
                theirs = paper_value.get((table.number, train_set, model, col.test_set, col.metric))
                if col.test_set == "average":
                    continue  # filled from the row's other cells below
                test_set = TEST_SET_ALIASES.get(col.test_set, col.test_set)
                expected = metrics_pattern.format(model=model, train_set=train_set, test_set=test_set)
                if col.metric == "params_millions":
                    summary = train_summaries.get((model, train_set))
                    table.cells[row, col] = (
                        Cell(summary["parameters"] / 1e6, None, theirs) if summary
                        else Cell(None, None, theirs,
                                  missing=train_pattern.format(model=model, train_set=train_set))
                    )
                    continue
                table.cells[row, col] = _metric_cell(metrics.get((model, train_set, test_set)),
                                                     col.metric, theirs, expected)
            for col in table.columns:
                if col.test_set != "average":
                    continue
                others = [table.cells[row, c] for c in table.columns
                          if c.test_set != "average" and c.metric == col.metric]
                theirs = paper_value.get((table.number, train_set, model, col.test_set, col.metric))
                gaps = [c.missing for c in others if c.missing]
                value = (None if gaps or not others
                         else math.fsum(c.value for c in others) / len(others))
                table.cells[row, col] = Cell(value, None, theirs, missing=gaps[0] if gaps else None)
    return tables


# ---------------------------------------------------------------- formatting

def _num(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def _signed(x: float | None, digits: int = 2) -> str:
    return "" if x is None else f"{x:+.{digits}f}"


def _digits(col: Column) -> int:
    return 2


def cell_text(cell: Cell, col: Column) -> tuple[str, str, str]:
    """(this run with interval, paper, difference) as plain text; 'missing' where not built."""
    d = _digits(col)
    if cell.value is None:
        ours = "missing" if cell.missing else "n/a"
    else:
        ours = _num(cell.value, d) + (f" [{_num(cell.ci[0], 1)}, {_num(cell.ci[1], 1)}]" if cell.ci else "")
    return ours, _num(cell.paper, d) or "-", _signed(cell.diff, d) or "-"


def _row_label(table: Table, row: tuple[str, str]) -> list[str]:
    return [display(row[0]), display(row[1])]


def to_markdown(table: Table) -> str:
    head = ["Train set", "Model", *table.column_labels]
    units = "percentage points" + ("; millions for Params (M)" if any(c.metric == "params_millions"
                                                                       for c in table.columns) else "")
    lines = [f"### {table.title}", "",
             "Each cell: this run's value [95% bootstrap interval] / the paper's value / difference "
             f"({units}).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in table.rows:
        cells = []
        for col in table.columns:
            ours, theirs, diff = cell_text(table.cells[row, col], col)
            cells.append(f"{ours} / {theirs} / {diff}")
        lines.append("| " + " | ".join(_row_label(table, row) + cells) + " |")
    lines.append("")
    if table.note:
        lines += [f"Note: {table.note}", ""]
    if table.missing:
        lines.append(f"Missing cells ({len(table.missing)} files not built; run `snakemake` on them):")
        lines += [f"- `{m}`" for m in table.missing]
        lines.append("")
    return "\n".join(lines)


def csv_header(table: Table) -> list[str]:
    head = ["table", "train_set", "model"]
    for key in table.column_keys:
        head += [key, f"{key}_ci_low", f"{key}_ci_high", f"{key}_paper", f"{key}_diff"]
    return head + ["missing"]


def to_csv(table: Table) -> str:
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(csv_header(table))
    for row in table.rows:
        out: list = [table.number, row[0], row[1]]
        gaps = []
        for col in table.columns:
            c = table.cells[row, col]
            d = _digits(col) + 2
            out += [_num(c.value, d), _num(c.ci[0], d) if c.ci else "", _num(c.ci[1], d) if c.ci else "",
                    _num(c.paper, d), _num(c.diff, d)]
            if c.missing:
                gaps.append(f"{col.test_set}:{col.metric}")
        out.append(";".join(gaps))
        w.writerow(out)
    return buf.getvalue()


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text


def to_latex(table: Table) -> str:
    """A booktabs table; each cell stacks this run's value, its interval and the paper's value."""
    n = len(table.columns)
    lines = [r"% Generated by deepfake-xai; needs \usepackage{booktabs}.",
             r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{_tex_escape(table.title)}. This run [95\% CI] / paper ($\Delta$).}}",
             rf"\label{{tab:paper{table.number}}}",
             r"\begin{tabular}{ll" + "c" * n + "}", r"\toprule",
             " & ".join(["Train set", "Model", *map(_tex_escape, table.column_labels)]) + r" \\",
             r"\midrule"]
    for row in table.rows:
        cells = []
        for col in table.columns:
            c = table.cells[row, col]
            ours, theirs, diff = cell_text(c, col)
            if c.value is None:
                cells.append(rf"\shortstack{{{ours} \\ {{\scriptsize paper {theirs}}}}}")
                continue
            main = _num(c.value, _digits(col))
            ci = f"[{_num(c.ci[0], 1)}, {_num(c.ci[1], 1)}]" if c.ci else ""
            cells.append(rf"\shortstack{{{main} \\ {{\scriptsize {ci}}} \\ "
                         rf"{{\scriptsize {theirs} (${diff.replace('-', '-')}$)}}}}")
        lines.append(" & ".join([*map(_tex_escape, _row_label(table, row)), *cells]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    notes = []
    if table.note:
        notes.append(_tex_escape(table.note))
    if table.missing:
        notes.append(f"Missing cells (not built): {len(table.missing)}.")
    if notes:
        lines.append(r"\par\smallskip{\footnotesize " + " ".join(notes) + "}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_tables(tables: list[Table], out_dir: str | Path) -> list[Path]:
    """table{N}.md, .csv and .tex for each table, each written atomically."""
    out_dir = Path(out_dir)
    written = []
    for t in tables:
        for ext, render in (("md", to_markdown), ("csv", to_csv), ("tex", to_latex)):
            path = out_dir / f"table{t.number}.{ext}"
            write_text(path, render(t))
            written.append(path)
    return written
