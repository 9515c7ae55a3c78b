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
    with pytest.raises(KeyError, match="no subcommand 'nope'"):
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
    assert _digests(root) == first
    _edit(root / "cli.py", '"train one model on one train set"', '"train a model"')  # help text only
    assert _digests(root) == first
    _edit(root / "cli.py", "def _write_predictions(", "def _write_predictions(  # edited\n")  # train's helper
    after = _digests(root)
    assert after["train"] != first["train"] and {c: after[c] for c in ("metrics", "report")} == \
        {c: first[c] for c in ("metrics", "report")}
    _edit(root / "report/data/paper_tables.csv", "\n", "\n\n")
    again = _digests(root)
    assert again["report"] != after["report"] and again["train"] == after["train"]
    _edit(root / "explain/methods.py", '"""', '"""Edited. ')
    last = _digests(root)
    assert last["explain-cell"] != again["explain-cell"] and last["metrics"] == again["metrics"]


def test_every_rule_that_runs_a_subcommand_tracks_that_subcommands_code():
    import re

    rules = {}
    for path in sorted((REPO / "workflow/rules").glob("*.smk")):
        for block in re.split(r"\n(?=\s*rule \w+:)", path.read_text()):
            m = re.match(r"\s*rule (\w+):", block)
            script = re.search(r"workflow/scripts/(\w+)\.py", block)
            if m and script:
                tracked = re.search(r'code=code_digest\("([\w-]+)"\)', block)
                rules[m.group(1)] = (script.group(1).replace("_", "-"), tracked and tracked.group(1))
    assert rules.pop("download") == ("download", None)  # pinned by its checksum: no code re-downloads it
    assert len(rules) == 12 and all(cmd == tracked for cmd, tracked in rules.values()), rules
