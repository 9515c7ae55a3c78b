"""The package's shape: no import circle inside deepfake_xai, each stage's options declared once (in its
module) and reaching the Snakemake rule, params.yaml/dvc.yaml and the stage's code digest from
there, names that come from one definition, and no function longer than 80 lines."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_repo, run_snakemake

SRC = REPO / "src"


def import_graph(src: Path) -> dict[str, set[str]]:
    """module -> the package modules it imports (module level and inside functions), read from the
    source without importing it. ``from pkg import name`` is an edge to ``pkg.name`` when that is a
    module, else to ``pkg``."""
    files = {".".join(p.relative_to(src).with_suffix("").parts).removesuffix(".__init__"): p
             for p in src.rglob("*.py") if "__pycache__" not in p.parts}
    root = next(iter(files)).split(".")[0]
    graph = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in files}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                if not base.startswith(root):
                    continue
                for alias in node.names:
                    edges.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in files else base)
        graph[module] = {e for e in edges if e in files and e != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a -> b -> ... -> a) if there is one, else None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_inside_the_package():
    graph = import_graph(SRC)
    assert "deepfake_xai.runtime" in graph["deepfake_xai.train"]  # the graph is read, not empty
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_circle_check_finds_a_circle_through_a_function_level_import(tmp_path):
    pkg = tmp_path / "src/deepfake_xai"
    shutil.copytree(SRC / "deepfake_xai", pkg, ignore=shutil.ignore_patterns("__pycache__"))
    assert find_cycle(import_graph(tmp_path / "src")) is None
    # what the code did before: evaluate and train importing each other (one of them inside a function)
    train = pkg / "train.py"
    train.write_text(train.read_text() + "\n\nfrom .evaluate import pool  # noqa\n")
    evaluate = pkg / "evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n\ndef _again():\n    from .train import train  # noqa\n")
    cycle = find_cycle(import_graph(tmp_path / "src"))
    assert cycle and {"deepfake_xai.train", "deepfake_xai.evaluate"} <= set(cycle), cycle


def _functions(src: Path):
    for path in sorted(src.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path, node


def test_no_function_longer_than_80_lines():
    long = [f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p, n in _functions(SRC) if n.end_lineno - n.lineno + 1 > 80]
    assert not long, long


def test_method_and_set_names_have_one_definition():
    """The registry registers exactly the catalog's methods; no method name or set name is spelled out
    as a string in the code outside explain/ (methods) or sets.py (sets; the platforms' names are data in
    names/data/known.yaml), nor in the rules or the schema."""
    from deepfake_xai.explain import METHODS, catalog
    from deepfake_xai.names import platforms
    from deepfake_xai.sets import COMBINED, PRESOCIAL

    TRAIN_SETS = [PRESOCIAL, *platforms(), COMBINED]
    assert len(TRAIN_SETS) >= 6  # presocial, combined and at least TrueFace's four platforms

    assert set(METHODS) == set(catalog.names())
    assert [m for m in catalog.default_methods()] == [n for n in catalog.names() if not METHODS[n].opt_in]
    assert METHODS["scorecam"].opt_in and not METHODS["gradcam"].opt_in
    names = {*catalog.names(), *TRAIN_SETS}
    offenders = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC / "deepfake_xai")
        if rel.parts[0] == "explain" or rel.as_posix() == "sets.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body
                      and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        offenders += [f"{rel}:{n.lineno}: {n.value!r}" for n in ast.walk(tree)
                      if isinstance(n, ast.Constant) and n.value in names and id(n) not in docstrings]
    alternatives = "|".join(re.escape(n) for n in names)
    quoted = re.compile(rf"""["']({alternatives})["']""")  # a string in a rule
    schema = re.compile(rf"""^\s*({alternatives}):|[\[,]\s*({alternatives})\s*[\],]|default:\s*({alternatives})\s*$""")
    for path, pattern in [*((p, quoted) for p in (*(REPO / "workflow/rules").glob("*.smk"), REPO / "Snakefile")),
                          (REPO / "workflow/schemas/config.schema.yaml", schema)]:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line.split("#")[0]):
                offenders.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    # report/tables.py's display names of the paper's columns are data keyed by the set names
    offenders = [o for o in offenders if not o.startswith("report/tables.py")]
    assert not offenders, "\n".join(offenders)


def test_an_option_added_to_one_stage_reaches_the_rule_params_yaml_and_only_its_digest(tmp_path):
    """One edit, the stage module's declaration: the rule passes it, params.yaml (and so dvc.yaml's
    ${options.xai_cell}) holds it, the stage parses it, and only that stage's code digest changes."""
    wd = copy_repo(tmp_path / "wd", package=True)
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy2(REPO / name, wd / name)
    stage = wd / "src/deepfake_xai/stages/xai_cell.py"
    text = stage.read_text()
    anchor = '    Option("--out", "JSON file", required=True),\n'
    assert anchor in text
    stage.write_text(text.replace(anchor, anchor + '    Option("--new-knob", "a test option", type=int, default=1, '
                                               'config="evaluate.bootstrap"),\n'))
    env = {**os.environ, "PYTHONPATH": str(wd / "src")}

    def digests(root):
        code = ("import json; from deepfake_xai.provenance import code_digest as d; "
                "print(json.dumps({c: d(c) for c in ('xai-cell', 'explain-cell', 'train', 'metrics', 'report')}))")
        return yaml.safe_load(subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": root},
                                             capture_output=True, text=True, check=True).stdout)

    before, after = digests(str(SRC)), digests(str(wd / "src"))
    assert {c for c in before if before[c] != after[c]} == {"xai-cell"}
    dry = run_snakemake(wd, "-n", "-p", "results/synthetic/xai_metrics/mnasnet_100/presocial/presocial.json").stdout
    xai_command = next(line for line in dry.splitlines() if "deepfake_xai xai-cell" in line)
    assert "--new-knob 1000" in xai_command
    subprocess.run([sys.executable, "workflow/scripts/dvc_params.py", "--config", "config/config.yaml"], cwd=wd,
                   env=env, check=True, capture_output=True)
    params = yaml.safe_load((wd / "params.yaml").read_text())
    assert "--new-knob 1000" in params["options"]["xai_cell"]
    assert params["options"]["explain_cell"] == yaml.safe_load((REPO / "params.yaml").read_text())["options"]["explain_cell"]
    assert "${options.xai_cell}" in (wd / "dvc.yaml").read_text()  # dvc.yaml itself needs no edit
    helptext = subprocess.run([sys.executable, "-m", "deepfake_xai", "xai-cell", "--help"], env=env,
                              capture_output=True, text=True).stdout
    assert "--new-knob" in helptext


@pytest.mark.parametrize("config", ["config/config.yaml", "config/trueface.yaml"])
def test_every_dag_stage_parses_the_options_its_config_gives(config, tmp_path):
    """Each stage's config-fed command line is accepted by its own parser (a key renamed on one side only
    would fail here before any run)."""
    from deepfake_xai import config as dxcfg
    from deepfake_xai.cli import build_parser
    from deepfake_xai.stages import wiring

    cfg = dxcfg.load([str(REPO / config)])
    parser = build_parser()
    for command in wiring.DAG_STAGES:
        words = wiring.command_line(command, cfg)
        required = []
        for o in wiring.stage(command).OPTIONS:
            if o.positional:
                required.append("x")
            elif o.required and o.config is None:
                required += [o.flag, "{}" if o.dest == "settings_json" else "1"]
        import shlex

        args = parser.parse_args([command, *required, *shlex.split(words)])
        for dest, value in wiring.config_values(command, cfg).items():
            got = getattr(args, dest)
            if isinstance(value, dict):
                assert got == value, (command, dest)
            elif value is not None and not isinstance(value, bool):
                assert [str(v) for v in (value if isinstance(value, list) else [value])] == \
                       [str(v) for v in (got if isinstance(got, list) else [got])], (command, dest)
