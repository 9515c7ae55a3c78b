"""The code a subcommand runs, found from the imports, and its digest: what decides when the workflow
re-runs a job after an edit."""

import importlib.util
import shutil

import pytest
from conftest import REPO

from deepfake_xai import provenance


def _names(command: str) -> set[str]:
    return {p.relative_to(provenance.PACKAGE).as_posix() for p in provenance.code_files(command)}


def test_code_files_follow_imports_at_every_level():
    train = _names("train")
    # sets.select decides the splits a model trains on; train.py imports it inside a function
    assert {"train.py", "sets.py", "models.py", "data/manifest.py", "data/cache.py", "__init__.py"} <= train
    assert not any(n.startswith(("explain/", "report/")) for n in train) and "cli.py" not in train
    # importing explain.panels runs explain/__init__, which registers every method
    assert {"explain/__init__.py", "explain/methods.py", "explain/panels.py"} <= _names("montage")
    assert {"report/data/paper_tables.csv", "report/tables.py"} <= _names("report")  # package data
    assert "stages/train.py" in train and "stages/spec.py" in train and "stages/wiring.py" not in train
    with pytest.raises(KeyError, match="no stage 'nope'"):
        provenance.code_files("nope")


@pytest.fixture
def package_copy(tmp_path):
    """A copy of the package, whose files a test may edit."""
    root = tmp_path / "deepfake_xai"
    shutil.copytree(provenance.PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _digests(root, commands=("train", "metrics", "report", "explain-cell")) -> dict:
    """The digests computed by the copy's own provenance module, freshly loaded (nothing cached)."""
    spec = importlib.util.spec_from_file_location("provenance_copy", root / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {c: module.code_digest(c) for c in commands}


def _edit(path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_digest_changes_exactly_for_the_commands_whose_code_changed(package_copy):
    root = package_copy
    first = _digests(root)
    assert first == {c: provenance.code_digest(c) for c in first}  # a copy elsewhere: the same digests
    (root / "sets.py").touch()  # touched, not changed
    (root / "report/data/paper_tables.csv~").write_text("an editor's backup")
    _edit(root / "cli.py", '"verdict and heatmap panel for one image"', '"a verdict"')  # the dispatcher
    _edit(root / "stages/train.py", '"train one model on one train set"', '"train a model"')  # help texts only
    _edit(root / "stages/train.py", '"the config\'s name for the model', '"the model\'s name')
    _edit(root / "stages/train.py", 'EXAMPLE = ("deepfake-xai train', 'EXAMPLE = ("deepfake-xai  train')
    _edit(root / "sets.py", '"""The study\'s set names', '"""Edited docstring. The study\'s set names')
    _edit(root / "sets.py", "import pandas as pd", "import pandas as pd  # a comment\n\n")
    _edit(root / "__init__.py", '__version__ = "', '__version__ = "9')  # a release
    (root / "io.py").write_bytes((root / "io.py").read_bytes().replace(b"\n", b"\r\n"))  # line endings
    assert _digests(root) == first
    _edit(root / "stages/train.py", 'print(f"best epoch {', 'print(f"best: epoch {')
    after = _digests(root)  # code only the train stage runs
    assert after["train"] != first["train"]
    assert {c: after[c] for c in ("metrics", "report")} == {c: first[c] for c in ("metrics", "report")}
    _edit(root / "report/data/paper_tables.csv", "\n", "\n\n")
    again = _digests(root)
    assert again["report"] != after["report"] and again["train"] == after["train"]
    _edit(root / "explain/methods.py", "    return clf.weight, clf.bias", "    return clf.weight, clf.bias * 1")
    last = _digests(root)
    assert last["explain-cell"] != again["explain-cell"] and last["metrics"] == again["metrics"]


COMMANDS = ("synth", "extract", "manifest", "cache", "pretrained", "train", "predict", "pool", "metrics", "explain-cell",
            "montage", "actmax", "xai-cell", "xai-report", "report")

IMPORT_EACH_COMMAND = """
import ast, json, sys
from deepfake_xai import provenance as P
out = {}
for command in sys.argv[1:]:
    for name in [m for m in sys.modules if m.split(".")[0] == "deepfake_xai" and m != "deepfake_xai.provenance"]:
        del sys.modules[name]
    module = P.stage_module(command)
    path = P._module_file(module)
    namespace = {"__name__": module, "__package__": module.rsplit(".", 1)[0]}
    for sub in ast.walk(ast.parse(path.read_text())):  # every import of the stage, in functions too
        if isinstance(sub, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([sub], []), str(path), "exec"), namespace)
    out[command] = sorted(m for m in sys.modules if m.split(".")[0] == "deepfake_xai")
print(json.dumps(out))
"""


def test_the_static_scan_finds_every_module_the_imports_really_load():
    """Running each stage's import statements loads no package module the scan left out (an import
    hidden from it, e.g. a star import or one made by a module as it loads, would show here)."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH_COMMAND, *COMMANDS], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = json.loads(proc.stdout.splitlines()[-1])
    for command in COMMANDS:
        files = {provenance._module_file(m) for m in loaded[command]} - {provenance.PACKAGE / "provenance.py"}
        assert files <= set(provenance.code_files(command)), (command, files - set(provenance.code_files(command)))
        assert len(files) > 2, (command, files)  # the imports did run


def test_every_rule_that_runs_a_stage_tracks_that_stages_code():
    import re

    rules = {}
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", path.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            stage = re.search(r'"\{params\.(?:py\} -m deepfake_xai|launcher\}) ([\w-]+) ', block)
            if m and stage:
                tracked = re.search(r'code=code_digest\("([\w-]+)"\)', block)
                rules[m.group(1)] = (stage.group(1), tracked and tracked.group(1))
    assert rules.pop("download") == ("download", None)  # pinned by its checksum: no code re-downloads it
    assert len(rules) == 16 and all(cmd == tracked for cmd, tracked in rules.values()), rules
