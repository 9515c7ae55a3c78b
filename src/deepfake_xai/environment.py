"""The software a result was made with: the versions of every package that shapes a number (torch,
torchvision, timm, numpy, Pillow, grad-cam, scipy, this project) and this project's
commit, recorded in each train.json, metrics file and report. Read from the installed packages'
metadata, without importing them (a metrics job stays light)."""

from __future__ import annotations

import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path

# Distribution names, as pip knows them.
PACKAGES = ("torch", "torchvision", "timm", "numpy", "pillow", "grad-cam", "scipy", "deepfake-xai")


def git_commit(cwd: str | Path = ".") -> str:
    """The checkout's commit, marked ``-dirty`` when tracked files differ; 'unknown' outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return sha + ("-dirty" if dirty else "")


@cache
def versions() -> dict[str, str | None]:
    """{package: version (None where not installed)} and ``commit``: the commit of the checkout this
    package runs from (an editable install), else 'unknown'."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["commit"] = git_commit(Path(__file__).resolve().parent)
    return out
