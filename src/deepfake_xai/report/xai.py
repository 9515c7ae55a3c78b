"""The explanation-quality report: methods ranked by localization and faithfulness (with 95%
intervals), the sanity check's verdicts, spatial priors per platform, frequency spectra of real vs
fake per platform, and robustness curves. Reads the xai-cell JSON files, the maps files, the
manifest and one image cache."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..explain import quality as Q
from ..explain.assess import CONTROLLED_SCORES, COUNTERFACTUAL, curve_key, score_direction
from ..explain.catalog import CATALOG, PRIOR_METHOD
from ..io import write_text
from ..names import part_order
from .figures import pyplot, save_figure
from .tables import display

# Which direction is better for each score, and how it is shown.
SCORES = [
    ("energy_in_box", "energy in evidence box", +1),
    ("pointing_game", "pointing game", +1),
    ("insertion_auc", "insertion AUC", +1),
    ("deletion_auc", "deletion AUC", -1),
    ("road", "ROAD (LeRF-MoRF)/2", +1),
    ("confidence_drop", "confidence drop, top {keep} kept", -1),
]
EXPECTED_SANITY = {m.name: m.expected_sanity for m in CATALOG if m.expected_sanity}  # Adebayo et al. 2018


def _label(key: str, label: str, cells: list[dict]) -> str:
    """A score's column title; the kept fraction of the confidence score comes from the cells."""
    if "{keep}" not in label:
        return label
    kept = sorted({c["keep"] for c in cells if c.get("keep") is not None})
    return label.format(keep=f"{100 * kept[0]:g}%" if len(kept) == 1 else "fraction")


def xai_files(paths: Iterable[str | Path]) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in paths]


def pooled(cells: list[dict], method: str, key: str, within: str | None = None) -> dict | None:
    """A score of one method pooled over cells: the image-weighted mean of the cells' means, with a
    95% interval by the normal approximation (each cell's standard error read from its bootstrap
    interval, (high - low) / 3.92; the cells' images are independent). None when a cell has no
    interval. ``within``: the score sits in that sub-dictionary of the method's entry (``replacements``)."""
    def entry(c):
        e = c["methods"].get(method) or {}
        return (e.get(within) or {}).get(key) if within else e.get(key)

    entries = [entry(c) for c in cells if entry(c)]
    entries = [e for e in entries if e.get("mean") is not None]
    if not entries:
        return None
    w = np.array([e["n"] for e in entries], dtype=float)
    means = np.array([e["mean"] for e in entries])
    mean = float((w * means).sum() / w.sum())
    ci = None
    if all(e.get("ci95") for e in entries):
        se = np.array([(e["ci95"][1] - e["ci95"][0]) / (2 * 1.96) for e in entries])
        half = 1.96 * float(np.sqrt(((w * se) ** 2).sum())) / w.sum()
        ci = [mean - half, mean + half]
    return {"mean": mean, "ci95": ci, "cells": len(entries), "n": int(w.sum())}


def ranking(cells: list[dict], check: dict | None = None) -> list[dict]:
    """One row per method: pooled scores, ranks by localization (energy in box) and faithfulness
    (insertion minus deletion AUC), and the sanity verdicts over cells. A rank whose scores failed
    the controlled check (``check``) is not given."""
    methods = sorted({m for c in cells for m in c["methods"]})
    rows = []
    for m in methods:
        row = {"method": m}
        for key, _, _ in SCORES:
            row[key] = pooled(cells, m, key)
        verdicts = [c["methods"][m]["sanity"] for c in cells if m in c["methods"]]
        row["sanity_fails"] = sum(v == "fails" for v in verdicts)
        row["sanity_passes"] = sum(v == "passes" for v in verdicts)
        row["sanity_undetermined"] = sum(v.startswith("undetermined") for v in verdicts)
        row["sanity_spearman"] = pooled(cells, m, "sanity_spearman")
        ins, dele = row["insertion_auc"], row["deletion_auc"]
        row["faithfulness"] = None if not ins or not dele else ins["mean"] - dele["mean"]
        rows.append(row)
    for key, rank_key in (("energy_in_box", "localization_rank"), ("faithfulness", "faithfulness_rank")):
        if not rank_allowed(key, check):
            continue
        def value(r, key=key):
            v = r[key]
            return v["mean"] if isinstance(v, dict) else v
        ordered = sorted([r for r in rows if value(r) is not None], key=lambda r: -value(r))
        for i, r in enumerate(ordered, 1):
            r[rank_key] = i
    return sorted(rows, key=lambda r: (r.get("faithfulness_rank", 99), r["method"]))


def rank_allowed(key: str, check: dict | None) -> bool:
    """Whether a rank may be given: its scores did not fail the controlled check (unchecked, where
    the data has no controlled fakes, is allowed and said so in ranking.md)."""
    needs = {"energy_in_box": ("energy_in_box",), "faithfulness": ("insertion_auc", "deletion_auc")}[key]
    return not check or all(check.get(k, {}).get("passed") is not False for k in needs)


def controlled_keys(parts: list[dict]) -> list[str]:
    """The scores the controlled check holds to the known answers: localization, the default removal
    curves, then each replacement's (the counterfactual twin first), as the cells recorded them."""
    keys = list(CONTROLLED_SCORES)
    for name in dict.fromkeys(r for p in parts for r in p.get("replacements", [COUNTERFACTUAL])):
        keys += [curve_key(name, "insertion"), curve_key(name, "deletion")]
    present = {k for p in parts for m in p["methods"].values() for k in m}
    return [k for k in keys if k in present]


def controlled_rows(cells: list[dict]) -> list[dict]:
    """One row per method (the oracle and random maps included) over every cell's controlled fakes
    whose verdict the region decides (``decided``: the fake called fake, its twin real; where a
    model calls both fake, or neither, the region is not what it used): each score's mean with a
    bootstrap 95% interval. Each value is keyed by (cell, image): the
    same controlled image scored by two models is one image, resampled as one (its values move
    together), and two methods are compared on the (cell, image) pairs both scored."""
    parts = [c["controlled"] for c in cells if c.get("controlled")]
    methods = sorted({m for p in parts for m in p["methods"]})
    rows = []
    for m in methods:
        row = {"method": m}
        for key in controlled_keys(parts):
            pairs = [((i, str(image)), v) for i, p in enumerate(parts) if m in p["methods"]
                     for image, v, decided in zip(p.get("image_ids") or range(p["n"]), p["methods"][m].get(key, []),
                                                  p.get("decided") or [True] * p["n"])
                     if decided and v is not None and np.isfinite(v)]
            if pairs:
                keys, values = zip(*pairs)
                row[key] = {**Q.mean_ci(values, groups=[k[1] for k in keys]), "values": list(values),
                            "keys": list(keys), "images": len({k[1] for k in keys})}
            else:
                row[key] = None
        rows.append(row)
    return rows


def _row_keys(rows: list[dict]) -> list[str]:
    return [k for k in (rows[0] if rows else {}) if k != "method"]


def controlled_check(rows: list[dict]) -> dict[str, dict]:
    """Per score: whether it ranks the known answers correctly on the controlled fakes: no method
    above the oracle, and the oracle ahead of the random map image by image (the paired interval above
    zero). Methods below the random map are named (worse than noise: a finding about them, not about
    the score). A score that fails is not used to rank methods."""
    by = {r["method"]: r for r in rows}
    out = {}
    for key in _row_keys(rows) or list(CONTROLLED_SCORES):
        sign = score_direction(key)
        if "oracle" not in by or "random" not in by or not by["oracle"].get(key) or not by["random"].get(key):
            out[key] = {"passed": None, "why": "no controlled images"}
            continue
        scored = sorted((r for r in rows if r[key]), key=lambda r, key=key, sign=sign: -sign * r[key]["mean"])
        order = [r["method"] for r in scored]
        o, r = by["oracle"][key], by["random"][key]
        # paired over the same images: the oracle's advantage over the random map, image by image
        gap = _paired(o, r, sign)
        apart = bool(gap and gap["separated"])
        # The known answers must come out in order: nothing above the oracle (ties allowed: a method
        # may localize perfectly too) and the random map below it, intervals apart. A method below
        # the random map is a finding about that method (worse than noise), not about the score.
        above = [m["method"] for m in scored if sign * m[key]["mean"] > sign * o["mean"]]
        below = [m["method"] for m in scored if sign * m[key]["mean"] < sign * r["mean"]
                 and m["method"] not in REFERENCES]
        first, last = not above, "random" not in above
        why = []
        if above:
            why.append(f"{', '.join(above)} {'scores' if len(above) == 1 else 'score'} better than the oracle")
        if not apart:
            wrong_way = bool(gap["ci95"] and gap["ci95"][1] < 0)
            why.append(("the random map beats the oracle" if wrong_way else
                        "the oracle's paired advantage over the random map is not significant")
                       + f" ({gap['mean']:+.3f}, 95% interval {_interval(gap)})")
        if below:
            why.append(f"below chance (worse than the random map): {', '.join(below)}")
        out[key] = {"passed": first and last and apart, "why": "; ".join(why) or "oracle first, random last",
                    "order": order, "below_chance": below, "oracle_advantage": gap}
    return out


REFERENCES = ("oracle", "random")


def _interval(v: dict) -> str:
    return f"[{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" if v.get("ci95") else "n/a"


POWER_Z = 1.96 + 0.84  # a two-sided 5% test with 80% power


def _paired(a: dict, b: dict, sign: int) -> dict | None:
    """sign * (a - b) on the (cell, image) pairs both scored, with a bootstrap interval that resamples
    images, and the distinct images a paired comparison would need to exclude zero with 80% power at
    this mean: ((1.96 + 0.84) sd / mean)^2, sd over images of their mean difference. None when the
    two share no scored image."""
    vb = dict(zip(b.get("keys", []), b["values"]))
    common = [(k, v) for k, v in zip(a.get("keys", []), a["values"]) if k in vb]
    if not common:
        return None
    images = [k[1] for k, _ in common]
    d = sign * np.array([v - vb[k] for k, v in common], dtype=float)
    gap = Q.mean_ci(d, groups=images)
    per_image = np.array([d[[i for i, im in enumerate(images) if im == u]].mean() for u in dict.fromkeys(images)])
    sd = float(per_image.std(ddof=1)) if len(per_image) > 1 else 0.0
    gap["images"] = len(per_image)
    gap["images_needed"] = (int(math.ceil((POWER_Z * sd / abs(gap["mean"])) ** 2)) if gap["mean"] and sd > 1e-9
                            else None)
    gap["separated"] = bool(gap["ci95"] and gap["ci95"][0] > 0)
    return gap


def separation(rows: list[dict], key: str) -> list[dict]:
    """The methods in order of one controlled score (references included), each with its paired
    difference to the next and to the random map (the same images, image by image): which neighbours
    the data tells apart, which methods carry more than chance, and how many images it would take."""
    sign = score_direction(key)
    scored = sorted((r for r in rows if r.get(key) and r[key].get("values")), key=lambda r: -sign * r[key]["mean"])
    rand = next((r for r in scored if r["method"] == "random"), None)
    out = []
    for i, r in enumerate(scored):
        gap = _paired(r[key], scored[i + 1][key], sign) if i + 1 < len(scored) else None
        vs_random = _paired(r[key], rand[key], sign) if rand is not None and r is not rand else None
        out.append({"method": r["method"], "score": r[key], "gap": gap, "separated": gap["separated"] if gap else None,
                    "vs_random": vs_random})
    return out


def separation_markdown(rows: list[dict], check: dict, n_images: int) -> list[str]:
    """The ranking on the controlled fakes, one table per score that passed the check."""
    passed = [k for k, c in check.items() if c["passed"]]
    if not passed:
        return []
    distinct = max((r[k]["images"] for r in rows for k in passed if r.get(k)), default=0)
    lines = ["## Ranking on the controlled fakes (scores that passed)", "",
             f"{n_images} explanations of {distinct} distinct controlled fakes decided by their region (each explained "
             "cell's model scores the fakes of its test set it calls fake and whose twin it calls real; an image "
             "scored by two models is resampled as one). Each method's mean [95% "
             "interval]; its paired advantage (the same images) over the next method and over the random map, each "
             "`yes` where the 95% interval excludes zero; and the distinct images a paired comparison would need to "
             "tell the method from random with 80% power at the advantage seen here, ((1.96 + 0.84) sd / mean)^2. "
             "figure: ranking.png.", ""]
    for key in passed:
        sep = separation(rows, key)
        told = sum(bool(e["separated"]) for e in sep)
        above = sum(bool(e["vs_random"] and e["vs_random"]["separated"]) for e in sep if e["method"] not in REFERENCES)
        n_methods = sum(e["method"] not in REFERENCES for e in sep)
        lines += [f"**{key.replace('_', ' ')}** ({'lower' if score_direction(key) < 0 else 'higher'} is better; "
                  f"{told} of {len(sep) - 1} neighbours separated; {above} of {n_methods} methods above chance)", "",
                  "| rank | method | score | over the next | separated | over random | above chance | images for 80% power |",
                  "|---|---|---|---|---|---|---|---|"]
        for i, e in enumerate(sep, 1):
            gap, vr = e["gap"], e["vs_random"]
            yes = lambda g: "-" if not g else ("yes" if g["separated"] else "no")  # noqa: E731
            gap_txt = "-" if not gap else f"{gap['mean']:+.3f} {_interval(gap)}"
            vr_txt = "-" if not vr else f"{vr['mean']:+.3f} {_interval(vr)}"
            need = "-" if not vr or vr["mean"] <= 0 or vr["images_needed"] is None else str(vr["images_needed"])
            lines.append(f"| {i} | {e['method']} | {_fmt(e['score'])} | {gap_txt} | {yes(gap)} | {vr_txt} | "
                         f"{yes(vr)} | {need} |")
        lines.append("")
    return lines


def ranking_figure(rows: list[dict], check: dict, path: str | Path) -> Path:
    """A forest plot per controlled score that passed the check: each method's mean with its 95%
    interval, best at the top, the oracle and random maps marked."""
    passed = [k for k, c in check.items() if c["passed"]] or [k for k in check if check[k]["passed"] is not None][:1]
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(passed)), figsize=(4.2 * max(1, len(passed)), 4.2), squeeze=False)
    for ax, key in zip(axes[0], passed):
        sep = separation(rows, key)[::-1]
        y = np.arange(len(sep))
        mean = [e["score"]["mean"] for e in sep]
        ci = [e["score"].get("ci95") or [e["score"]["mean"]] * 2 for e in sep]
        colors = ["tab:green" if e["method"] == "oracle" else "tab:red" if e["method"] == "random" else "tab:blue"
                  for e in sep]
        ax.errorbar(mean, y, xerr=np.array([[m - c[0], c[1] - m] for m, c in zip(mean, ci)]).T, fmt="none",
                    ecolor="grey", capsize=2)
        ax.scatter(mean, y, c=colors, zorder=3, s=16)
        ax.set_yticks(y, [e["method"] for e in sep], fontsize=7)
        ax.set_title(f"{key.replace('_', ' ')} ({'lower' if score_direction(key) < 0 else 'higher'} is better)"
                     + ("" if check[key]["passed"] else " - FAILED the check"), fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
    if not passed:
        axes[0, 0].text(0.5, 0.5, "no controlled fakes: nothing ranked on known answers", ha="center", va="center")
        axes[0, 0].axis("off")
    fig.suptitle("Methods on the controlled fakes (green: oracle, red: random), mean and 95% interval", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _replacements_of(keys) -> list[str | None]:
    """The replacements whose curves ``keys`` hold (None: the default curves), in order."""
    out: list = []
    for k in keys:
        if k.endswith("_auc"):
            name = None if k in ("deletion_auc", "insertion_auc") else k.rsplit("_", 2)[0]
            if name not in out:
                out.append(name)
    return out


def _replacement_name(name: str | None) -> str:
    return "default" if name is None else name


def by_replacement(get, methods: list[str], keys) -> dict[str, dict[str, float]]:
    """Faithfulness (insertion minus deletion AUC) of each method under each replacement; ``get(method,
    key)`` reads a score's mean (None where missing)."""
    out: dict[str, dict[str, float]] = {}
    for name in _replacements_of(keys):
        col = {}
        for m in methods:
            ins, dele = get(m, curve_key(name, "insertion")), get(m, curve_key(name, "deletion"))
            if ins is not None and dele is not None:
                col[m] = ins - dele
        out[_replacement_name(name)] = col
    return out


def kendall_taus(faith: dict[str, dict[str, float]]) -> list[dict]:
    """Kendall's tau-b between the method rankings of every two replacements (the methods both scored),
    with its p-value: how far the ranking of methods depends on what replaces the removed pixels."""
    from scipy.stats import kendalltau

    names = list(faith)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = sorted(set(faith[a]) & set(faith[b]))
            if len(common) < 3:
                continue
            res = kendalltau([faith[a][m] for m in common], [faith[b][m] for m in common])
            out.append({"a": a, "b": b, "tau": float(res.statistic), "p_value": float(res.pvalue),
                        "n_methods": len(common)})
    return out


def replacement_markdown(faith: dict[str, dict[str, float]], taus: list[dict], images: str) -> list[str]:
    """The faithfulness of each method under each replacement with its rank, and the rankings' agreement."""
    if len(faith) < 2:
        return []
    methods = sorted({m for col in faith.values() for m in col})
    ranks = {r: {m: i for i, m in enumerate(sorted(col, key=lambda m, col=col: -col[m]), 1)}
             for r, col in faith.items()}
    lines = ["## Removal curves by replacement", "",
             f"Insertion minus deletion AUC ({images}) when the removed pixels are replaced by: `default` (deletion: the "
             "normalization mean, insertion: a blurred copy), `twin` (the controlled fake's real twin: no artefact of "
             "its own), `black`, `mean` (the image's mean colour), `blur`, `noise` (Gaussian, the image's colour "
             "statistics) or `jpeg` (the image at JPEG quality 30: content kept, fine traces gone). Rank in "
             "parentheses (1 = most faithful). A forensic detector reads traces that most replacements destroy by "
             "themselves (Gowrisankar & Thing 2023), so the ranking may follow the replacement more than the method.",
             "", "| method | " + " | ".join(faith) + " |", "|---|" + "---|" * len(faith)]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(f"{faith[r][m]:+.3f} ({ranks[r][m]})" if m in faith[r] else "-"
                                              for r in faith) + " |")
    if taus:
        lines += ["", "Kendall's tau-b between the rankings of the methods (references excluded): 1 the same order, "
                  "-1 reversed.", "", "| | " + " | ".join(list(faith)[1:]) + " |",
                  "|---|" + "---|" * (len(faith) - 1)]
        tau = {(t["a"], t["b"]): t["tau"] for t in taus}
        names = list(faith)
        for i, a in enumerate(names[:-1]):
            lines.append(f"| {a} | " + " | ".join("" if j <= i else (f"{tau[(a, b)]:+.2f}" if (a, b) in tau else "-")
                                                  for j, b in enumerate(names[1:], 1)) + " |")
        lines.append(f"\nMean tau over all pairs: {np.mean([t['tau'] for t in taus]):+.2f} "
                     f"({taus[0]['n_methods']} methods).")
    return lines + [""]


def controlled_markdown(rows: list[dict], check: dict, n_images: int, n_decided: int | None = None) -> str:
    keys = _row_keys(rows)
    main = [k for k in keys if k in CONTROLLED_SCORES or k.startswith(f"{COUNTERFACTUAL}_")]
    n_decided = n_images if n_decided is None else n_decided
    lines = ["# The controlled check: scores on fakes whose evidence is known", "",
             f"{n_images} controlled fakes explained (pooled over the explained cells), {n_decided} of them decided by "
             "their region: each equals a real twin pixel for pixel except inside one square region, so a model "
             "that calls the fake fake and its twin real used that region; only those pairs are scored (where a "
             "model calls both fake, or neither, the region is not what it used). `oracle` is the "
             "region itself (lightly smoothed), `random` seeded noise. A score passes when no method scores above the "
             "oracle and the oracle beats the random map image by image (the paired difference's 95% bootstrap interval "
             "above zero); methods scoring below the "
             "random map are named (worse than noise). The ranking (ranking.md) uses only the scores that pass. "
             "The counterfactual deletion and insertion replace pixels by the real twin's (what the region is "
             "without the fake), which adds no artefact of its own.", "",
             "| method | " + " | ".join(k.replace("_", " ") + (" (lower is better)" if score_direction(k) < 0 else "")
                                       for k in main) + " |",
             "|---|" + "---|" * len(main)]
    for r in rows:
        lines.append(f"| {r['method']} | " + " | ".join(_fmt(r[k]) for k in main) + " |")
    lines += ["", "| score | check | oracle minus random, paired (95% interval) | why |", "|---|---|---|---|"]
    for k, c in check.items():
        verdict = "n/a" if c["passed"] is None else ("passes" if c["passed"] else "FAILS")
        gap = c.get("oracle_advantage")
        gap_txt = f"{gap['mean']:+.3f} {_interval(gap)}" if gap else "-"
        lines.append(f"| {k.replace('_', ' ')} | {verdict} | {gap_txt} | {c['why']} |")
    faith = controlled_faithfulness(rows)
    lines += ["", *replacement_markdown(faith, kendall_taus(_without_references(faith)),
                                        "pooled controlled fakes; the oracle and random maps included")]
    return "\n".join(lines) + "\n"


def explained_faithfulness(cells: list[dict]) -> dict[str, dict[str, float]]:
    """By replacement, each method's faithfulness on the cells' explained images (pooled over cells)."""
    methods = sorted({m for c in cells for m in c["methods"]})
    keys = list(dict.fromkeys(k for c in cells for e in c["methods"].values() for k in (e.get("replacements") or {})))
    if not keys:
        return {}

    def get(m, k):
        v = pooled(cells, m, k, "replacements") if k not in ("deletion_auc", "insertion_auc") else pooled(cells, m, k)
        return v["mean"] if v else None
    return by_replacement(get, methods, ["insertion_auc", "deletion_auc", *keys])


def replacements_csv(sets: dict[str, dict[str, dict[str, float]]]) -> str:
    """One row per (images, replacement, method): faithfulness and its rank under that replacement; then
    Kendall's tau of every two replacements' rankings (references excluded)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["images", "replacement", "method", "faithfulness", "rank", "kendall_tau_with", "tau", "p_value"])
    for images, faith in sets.items():
        for r, col in faith.items():
            for i, m in enumerate(sorted(col, key=lambda m, col=col: -col[m]), 1):
                w.writerow([images, r, m, f"{col[m]:.6f}", i, "", "", ""])
        for t in kendall_taus(_without_references(faith)):
            w.writerow([images, t["a"], "", "", "", t["b"], f"{t['tau']:.6f}", f"{t['p_value']:.6g}"])
    return buf.getvalue()


def _without_references(faith: dict) -> dict:
    return {r: {m: v for m, v in col.items() if m not in REFERENCES} for r, col in faith.items()}


def controlled_faithfulness(rows: list[dict]) -> dict[str, dict[str, float]]:
    by = {r["method"]: r for r in rows}
    return by_replacement(lambda m, k: (by[m].get(k) or {}).get("mean"), list(by), _row_keys(rows))


def controlled_csv(rows: list[dict], check: dict) -> str:
    keys = _row_keys(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["method"]
    for k in keys:
        head += [k, f"{k}_ci_low", f"{k}_ci_high", f"{k}_n"]
    w.writerow(head)
    for r in rows:
        out = [r["method"]]
        for k in keys:
            v = r[k] or {}
            ci = v.get("ci95") or ["", ""]
            out += [f"{v['mean']:.6f}" if v else "", *(f"{x:.6f}" if x != "" else "" for x in ci), v.get("n", "")]
        w.writerow(out)
    w.writerow(["check", *[x for k in keys for x in (
        {None: "n/a", True: "passes", False: "fails"}[check[k]["passed"]], "", "", "")]])
    return buf.getvalue()


def sanity_verdict(row: dict) -> str:
    if row["sanity_fails"] and row["sanity_fails"] >= row["sanity_passes"]:
        return "fails"
    if row["sanity_passes"]:
        return "passes"
    return "undetermined"


def _fmt(v: dict | None, digits: int = 3) -> str:
    if not v:
        return "-"
    ci = f" [{v['ci95'][0]:.{digits}f}, {v['ci95'][1]:.{digits}f}]" if v.get("ci95") else ""
    return f"{v['mean']:.{digits}f}{ci}"


def _check_text(check: dict | None) -> list[str]:
    """What ranking.md says of the controlled check: which scores passed, which ranks are withheld."""
    if not check or all(c["passed"] is None for c in check.values()):
        return ["**Controlled check: not run** (this dataset has no controlled fakes, data.synthetic.controlled): the "
                "scores below were never shown to rank a known answer correctly; read the ranks with that in mind.", ""]
    passed = [k for k, c in check.items() if c["passed"]]
    failed = [f"{k} ({c['why']})" for k, c in check.items() if c["passed"] is False]
    withheld = [name for key, name in (("energy_in_box", "localization"), ("faithfulness", "faithfulness"))
                if not rank_allowed(key, check)]
    return [f"**Controlled check** (controlled.md): passed: {', '.join(passed) or 'none'}; failed: "
            f"{', '.join(failed) or 'none'}."
            + (f" The {' and '.join(withheld)} rank rests on a failed score and is not given." if withheld else ""), ""]


def ranking_markdown(rows: list[dict], cells: list[dict], check: dict | None = None) -> str:
    n_img = sum(c["n_images"] for c in cells)
    n_box = sum(c["n_with_box"] for c in cells)
    lines = ["# Which heatmap method tells the truth", "", *_check_text(check),
             f"{len(cells)} explained cells, {n_img} images ({n_box} fakes with a known evidence region). "
             "Means with 95% intervals (bootstrap per cell; pooled over cells image-weighted, by the "
             "normal approximation). Localization rank: energy "
             "inside the evidence region (higher is better); faithfulness rank: insertion AUC minus "
             "deletion AUC (higher is better). Sanity: maps of the trained model vs the same "
             f"architecture with random weights; a method whose maps keep a rank correlation of "
             f"{cells[0]['sanity_threshold'] if cells else 0.5} or more is flagged as failing "
             "(Adebayo et al. 2018). Flat maps (every pixel equal, e.g. a CAM from a 1 x 1 feature "
             "map) rank nothing and are not scored.", "",
             "| method | faithfulness rank | localization rank | " + " | ".join(_label(k, lbl, cells)
                                                                            for k, lbl, _ in SCORES)
             + " | sanity (fails/passes/undetermined cells) | trained-vs-random rank corr. |",
             "|---|---|---|" + "---|" * len(SCORES) + "---|---|"]
    for r in rows:
        cells_txt = " | ".join(_fmt(r[k]) for k, _, _ in SCORES)
        lines.append(f"| {r['method']} | {r.get('faithfulness_rank', '-')} | {r.get('localization_rank', '-')} | "
                     f"{cells_txt} | {sanity_verdict(r)} ({r['sanity_fails']}/{r['sanity_passes']}/"
                     f"{r['sanity_undetermined']}) | {_fmt(r['sanity_spearman'], 2)} |")
    lines += ["", "## Per model (each explained cell)", "",
              "Energy in the evidence box / insertion minus deletion AUC / sanity verdict.", ""]
    methods = [r["method"] for r in rows]
    lines += ["| method | " + " | ".join(f"{display(c['model'])} ({display(c['train_set'])} -> "
                                         f"{display(c['test_set'])})" for c in cells) + " |",
              "|---|" + "---|" * len(cells)]
    for m in methods:
        parts = []
        for c in cells:
            e = c["methods"].get(m)
            if not e:
                parts.append("n/a")
                continue
            if e.get("flat_maps"):
                parts.append("flat maps")
                continue
            en = e.get("energy_in_box")
            faith = e["insertion_auc"]["mean"] - e["deletion_auc"]["mean"]
            left_out = f" ({e['flat_images']} flat left out)" if e.get("flat_images") else ""
            parts.append((f"{en['mean']:.3f}" if en else "-") + f" / {faith:+.3f} / {e['sanity'].split(' ')[0]}"
                         + left_out)
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    lines += ["", "## Sanity check against Adebayo et al. (2018)", "",
              "| method | expected | here | agrees |", "|---|---|---|---|"]
    by_method = {r["method"]: r for r in rows}
    for m, expected in EXPECTED_SANITY.items():
        if m in by_method:
            here = sanity_verdict(by_method[m])
            agrees = "n/a" if here == "undetermined" else ("yes" if here == expected else "no")
            lines.append(f"| {m} | {expected} | {here} | {agrees} |")
    lines.append("")
    lines += cascade_markdown(cells)
    lines += drift_markdown(drift_rows(cells))
    faith = explained_faithfulness(cells)
    lines += replacement_markdown(faith, kendall_taus(faith), "the explained images, pooled over cells")
    na = sorted({(m, why) for c in cells for m, why in c.get("not_applicable", {}).items()})
    if na:
        lines += ["Not applicable in some cells: " + "; ".join(f"{m} ({why})" for m, why in na), ""]
    return "\n".join(lines)


def ranking_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["method", "faithfulness_rank", "localization_rank", "faithfulness"]
    for k, _, _ in SCORES:
        head += [k, f"{k}_ci_low", f"{k}_ci_high"]
    head += ["sanity", "sanity_fails", "sanity_passes", "sanity_undetermined", "sanity_spearman"]
    w.writerow(head)
    for r in rows:
        out = [r["method"], r.get("faithfulness_rank", ""), r.get("localization_rank", ""),
               "" if r["faithfulness"] is None else f"{r['faithfulness']:.6f}"]
        for k, _, _ in SCORES:
            v = r[k] or {}
            ci = v.get("ci95") or ["", ""]
            out += [f"{v['mean']:.6f}" if v else "", *(f"{x:.6f}" if x != "" else "" for x in ci)]
        out += [sanity_verdict(r), r["sanity_fails"], r["sanity_passes"], r["sanity_undetermined"],
                "" if not r["sanity_spearman"] else f"{r['sanity_spearman']['mean']:.6f}"]
        w.writerow(out)
    return buf.getvalue()


def _resized(m: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if m.shape == (size, size):
        return m
    return np.asarray(Image.fromarray(m.astype(np.float32)).resize((size, size), Image.BILINEAR))


def priors_figure(maps_files: list[str | Path], platform_of: dict[str, str], path: str | Path,
                  method: str = PRIOR_METHOD) -> Path:
    """Mean heatmap of one method over real and over fake images, per platform (all explained
    cells pooled), with the share of attention inside the central face ellipse."""
    from ..explain.bulk import read_maps

    sums: dict[tuple[str, int], list[np.ndarray]] = {}
    for p in maps_files:
        cell = read_maps(p)
        if method not in cell["maps"]:
            continue
        for image_id, label, m in zip(cell["image_ids"], cell["labels"], cell["maps"][method]):
            sums.setdefault((platform_of.get(str(image_id), "?"), int(label)), []).append(m.astype(np.float32))
    plats = part_order(k[0] for k in sums)
    plt = pyplot()
    fig, axes = plt.subplots(2, max(1, len(plats)), figsize=(2.6 * max(1, len(plats)), 5.4), squeeze=False)
    for j, plat in enumerate(plats):
        for i, label in enumerate((0, 1)):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            group = sums.get((plat, label))
            if not group:
                ax.text(0.5, 0.5, "no images", ha="center", va="center", transform=ax.transAxes)
                continue
            size = max(g.shape[0] for g in group)  # maps of models with other input sizes, resized
            mean = np.mean([_resized(g, size) for g in group], axis=0)
            share = float(Q.energy_inside(mean[None], Q.ellipse_mask(size, size)[None])[0])
            ax.imshow(mean, cmap="jet", vmin=0, vmax=max(1e-6, float(mean.max())))
            ell = Q.ellipse_mask(size, size)
            ax.contour(ell, levels=[0.5], colors="white", linewidths=1)
            ax.set_title(f"{display(plat)} {'fake' if label else 'real'}\nn={len(group)}, face {100 * share:.0f}%",
                         fontsize=8)
    fig.suptitle(f"Mean {method} map; white: central face ellipse", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def spectra_figure(cache, manifest, path: str | Path, max_images: int = 400) -> Path:
    """Mean log-spectrum of real and fake test images per platform and their difference."""
    plt = pyplot()
    plats = part_order(manifest["platform"].unique())
    fig, axes = plt.subplots(3, len(plats), figsize=(2.6 * len(plats), 7.6), squeeze=False)
    for j, plat in enumerate(plats):
        spectra = {}
        for label in (0, 1):
            sel = manifest[(manifest["platform"] == plat) & (manifest["label"] == label) & (manifest["split"] == "test")]
            ids = sel["image_id"].astype(str).tolist()[:max_images]
            spectra[label] = Q.mean_log_spectrum(cache.read(cache.rows_for(ids))) if ids else None
        for i, (key, title) in enumerate(((0, "real"), (1, "fake"), ("diff", "fake - real"))):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if key == "diff":
                if spectra[0] is None or spectra[1] is None:
                    continue
                d = spectra[1] - spectra[0]
                lim = float(np.abs(d).max()) or 1.0
                ax.imshow(d, cmap="coolwarm", vmin=-lim, vmax=lim)
            elif spectra[key] is not None:
                ax.imshow(spectra[key], cmap="magma")
            ax.set_title(f"{display(plat)}: {title}", fontsize=8)
    fig.suptitle("Mean log-magnitude spectrum (centre: low frequencies, edges: Nyquist)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _cascade_points(c: dict) -> dict[str, int]:
    steps = c["cascade"]["steps"]
    return {"head": 0, "half": (len(steps) - 1) // 2, "all": len(steps) - 1}


def cascade_markdown(cells: list[dict]) -> list[str]:
    """Each method's rank correlation with the trained model's maps after the cascade's first step
    (the head re-initialized), halfway and at the end (every layer), pooled over cells image-weighted."""
    cells = [c for c in cells if c.get("cascade")]
    if not cells:
        return []
    methods = sorted({m for c in cells for m in c["cascade"]["methods"]})
    lines = ["## Cascading randomization (Adebayo et al. 2018)", "",
             "The model's blocks re-initialized from the output back, one per step (the same layers, order and "
             "seeds as Quantus's MPRT, tested), each method's maps of the same images recomputed after every step: "
             "their rank correlation with the trained model's maps. A method that explains the model drops towards 0 "
             "as soon as the layers it reads are random; one that stays high shows the input more than the model. "
             "Per cell: cascade.png.", "", "| method | head random | half random | all random |", "|---|---|---|---|"]
    for m in methods:
        parts = []
        for point in ("head", "half", "all"):
            vals = [(c["cascade"]["methods"][m][_cascade_points(c)[point]]) for c in cells if m in c["cascade"]["methods"]]
            vals = [v for v in vals if v.get("mean") is not None]
            n = sum(v["n"] for v in vals)
            parts.append(f"{sum(v['mean'] * v['n'] for v in vals) / n:+.2f}" if n else "-")
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    return lines + [""]


def cascade_figure(cells: list[dict], path: str | Path) -> Path:
    """One panel per explained cell: each method's mean rank correlation (95% band) with the trained
    model's maps as the cascade re-initializes the blocks from the output back."""
    cells = [c for c in cells if c.get("cascade")]
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(5.2 * max(1, len(cells)), 3.8), squeeze=False)
    for ax, c in zip(axes[0], cells):
        steps = c["cascade"]["steps"]
        x = np.arange(len(steps))
        for m, vals in sorted(c["cascade"]["methods"].items()):
            mean = np.array([np.nan if v["mean"] is None else v["mean"] for v in vals], float)
            ax.plot(x, mean, marker="o", ms=3, label=m)
            ci = [v.get("ci95") for v in vals]
            if all(ci):
                ax.fill_between(x, [v[0] for v in ci], [v[1] for v in ci], alpha=0.12)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(x, steps, rotation=70, fontsize=6)
        ax.set_ylim(-0.5, 1.05)
        ax.set_title(f"{display(c['model'])} ({display(c['train_set'])} -> {display(c['test_set'])}), "
                     f"n={c['cascade']['n']}", fontsize=8)
        ax.set_ylabel("rank correlation with the trained model's maps", fontsize=7)
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no cascade (xai.cascade_images: 0)", ha="center", va="center")
        axes[0, 0].axis("off")
    else:
        axes[0, -1].legend(fontsize=6, loc="upper right")
    fig.suptitle("Cascading randomization: blocks re-initialized from the output (left) to the input (right)",
                 fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


DRIFT_SCORES = ("spearman", "top10_overlap")


def drift_rows(cells: list[dict]) -> list[dict]:
    """One row per (cell, method, platform): how far the maps of shared copies drift from the maps of
    their pre-social originals (rank correlation, top-10% overlap; means, intervals, n)."""
    rows = []
    for c in cells:
        d = c.get("sharing_drift")
        if not d:
            continue
        for m, plats in sorted(d["methods"].items()):
            for platform in part_order(plats):
                rows.append({"model": c["model"], "train_set": c["train_set"], "test_set": c["test_set"],
                             "method": m, "platform": platform,
                             **{k: plats[platform].get(k) for k in DRIFT_SCORES}})
    return rows


def drift_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["model", "train_set", "test_set", "method", "platform",
                *(f"{k}{s}" for k in DRIFT_SCORES for s in ("", "_ci_low", "_ci_high", "_n"))])
    for r in rows:
        out = [r["model"], r["train_set"], r["test_set"], r["method"], r["platform"]]
        for k in DRIFT_SCORES:
            v = r[k] or {}
            ci = v.get("ci95") or ["", ""]
            out += ["" if v.get("mean") is None else f"{v['mean']:.6f}", *(f"{x:.6f}" if x != "" else "" for x in ci),
                    v.get("n", "")]
        w.writerow(out)
    return buf.getvalue()


def drift_markdown(rows: list[dict]) -> list[str]:
    """Per method and platform, the pooled rank correlation and top-10% overlap (image-weighted over cells)."""
    if not rows:
        return []
    plats = part_order({r["platform"] for r in rows})
    lines = ["## Explanation drift under sharing", "",
             "The maps of pre-social test images compared with the maps of their shared copies (same model, method "
             "and explained class; aligned on the part of the scene both show): rank correlation / overlap of the "
             "10% most salient pixels (1 / 1: unchanged; 0 / 0.1: unrelated), pooled over cells, image-weighted. "
             "Per cell with intervals: sharing_drift.csv and sharing_drift.png.", "",
             "| method | " + " | ".join(display(p) for p in plats) + " |", "|---|" + "---|" * len(plats)]
    for m in sorted({r["method"] for r in rows}):
        parts = []
        for p in plats:
            got = [r for r in rows if (r["method"], r["platform"]) == (m, p)]
            vals = {k: [(r[k]["mean"], r[k]["n"]) for r in got if r[k] and r[k].get("mean") is not None]
                    for k in DRIFT_SCORES}
            n = sum(w for _, w in vals["spearman"])
            parts.append(" / ".join(f"{sum(v * w for v, w in vals[k]) / max(1, sum(w for _, w in vals[k])):.2f}"
                                    for k in DRIFT_SCORES) + f" (n={n})" if n else "-")
        lines.append(f"| {m} | " + " | ".join(parts) + " |")
    return lines + [""]


def drift_figure(rows: list[dict], path: str | Path) -> Path:
    """Rank correlation between the maps of originals and their shared copies: one panel per explained
    cell, a bar per method and platform with its 95% interval."""
    plt = pyplot()
    cells = list(dict.fromkeys((r["model"], r["train_set"], r["test_set"]) for r in rows))
    fig, axes = plt.subplots(len(cells) or 1, 1, figsize=(10, 3.0 * max(1, len(cells))), squeeze=False)
    for ax, cell in zip(axes[:, 0], cells):
        sub = [r for r in rows if (r["model"], r["train_set"], r["test_set"]) == cell]
        methods = sorted({r["method"] for r in sub})
        plats = part_order({r["platform"] for r in sub})
        width = 0.8 / max(1, len(plats))
        for j, p in enumerate(plats):
            got = {r["method"]: r["spearman"] for r in sub if r["platform"] == p}
            mean = [np.nan if (got.get(m) or {}).get("mean") is None else got[m]["mean"] for m in methods]
            ci = [(got.get(m) or {}).get("ci95") for m in methods]
            err = np.array([[mu - c[0], c[1] - mu] if c else [0, 0] for mu, c in zip(mean, ci)]).T
            ax.bar(np.arange(len(methods)) + j * width, mean, width, yerr=err, capsize=2, label=display(p))
        ax.set_xticks(np.arange(len(methods)) + 0.4 - width / 2, methods, rotation=30, fontsize=7)
        ax.set_ylim(-0.2, 1.05)
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_ylabel("rank corr. with pre-social", fontsize=7)
        ax.set_title(f"{display(cell[0])} ({display(cell[1])} -> {display(cell[2])})", fontsize=8)
        ax.legend(fontsize=7, ncol=len(plats))
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no shared copies of explained images (xai.drift_images: 0?)", ha="center")
        axes[0, 0].axis("off")
    fig.suptitle("Explanation drift under sharing: maps of each shared copy vs its pre-social original", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def robustness_figure(cells: list[dict], path: str | Path) -> Path:
    """Accuracy vs JPEG quality and vs rescale factor, one line per (model, train set)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for c in cells:
        r = c.get("robustness")
        if not r:
            continue
        label = f"{display(c['model'])} ({display(c['train_set'])}->{display(c['test_set'])})"
        q = sorted(r["jpeg"], key=float, reverse=True)
        axes[0].plot(["clean", *q], [100 * r["clean"], *(100 * r["jpeg"][k] for k in q)], marker="o", label=label)
        acc = {**{float(k): v for k, v in r["scale"].items()}, 1.0: r["clean"]}
        f = sorted(acc)
        axes[1].plot([str(k) for k in f], [100 * acc[k] for k in f], marker="o", label=label)
    axes[0].set_xlabel("JPEG quality")
    axes[1].set_xlabel("rescale factor (there and back)")
    for ax in axes:
        ax.set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def build_xai_report(*, xai_paths: list, maps_paths: list, manifest, cache, out_dir: str | Path,
                     method: str = PRIOR_METHOD) -> list[Path]:
    cells = xai_files(xai_paths)
    out = Path(out_dir)
    crows = controlled_rows(cells)
    check = controlled_check(crows)
    n_controlled = sum(c["controlled"]["n"] for c in cells if c.get("controlled"))
    n_decided = sum(sum(c["controlled"].get("decided") or [True] * c["controlled"]["n"]) for c in cells
                    if c.get("controlled"))
    write_text(out / "controlled.md", controlled_markdown(crows, check, n_controlled, n_decided))
    write_text(out / "controlled.csv", controlled_csv(crows, check))
    rows = ranking(cells, check)
    write_text(out / "ranking.md", ranking_markdown(rows, cells, check)
               + "\n".join(separation_markdown(crows, check, n_decided)))
    write_text(out / "ranking.csv", ranking_csv(rows))
    write_text(out / "replacements.csv", replacements_csv({"controlled": controlled_faithfulness(crows),
                                                           "explained": explained_faithfulness(cells)}))
    platform_of = dict(zip(manifest["image_id"].astype(str), manifest["platform"].astype(str)))
    written = [out / "controlled.md", out / "controlled.csv", out / "ranking.md", out / "ranking.csv",
               out / "replacements.csv", ranking_figure(crows, check, out / "ranking.png")]
    written.append(priors_figure(maps_paths, platform_of, out / "priors.png", method))
    written.append(spectra_figure(cache, manifest, out / "spectra.png"))
    written.append(robustness_figure(cells, out / "robustness.png"))
    written.append(cascade_figure(cells, out / "cascade.png"))
    drift = drift_rows(cells)
    write_text(out / "sharing_drift.csv", drift_csv(drift))
    written += [out / "sharing_drift.csv", drift_figure(drift, out / "sharing_drift.png")]
    return written
