"""Which of the package's source decides what a ``deepfake-xai`` subcommand writes, and a digest of it.

A workflow should re-run a job when the code that runs in it changes: not when a file is merely
touched, checked out again or installed elsewhere, and not after an edit to code the job never runs.
The code of a subcommand is its ``cmd_*`` function in cli.py (with the cli.py helpers it calls) and
every package module it imports, directly or through other modules, found by reading the imports
(at module level and inside functions) without importing anything; package data folders (e.g.
``report/data/``) count with their package.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
NAME = PACKAGE.name


def _module_file(module: str) -> Path | None:
    """The file of ``deepfake_xai.a.b`` (a module, or a package's __init__.py); None if there is none."""
    parts = module.split(".")
    if parts[0] != NAME:
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [NAME, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(nodes, module: str, is_package: bool) -> set[str]:
    """Package modules imported by these AST nodes of ``module``, with their parent packages."""
    found = set()
    for node in nodes:
        for sub in ast.walk(node):
            names = []
            if isinstance(sub, ast.Import):
                names = [a.name for a in sub.names]
            elif isinstance(sub, ast.ImportFrom):
                if sub.level:
                    anchor = module.split(".") if is_package else module.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (sub.level - 1)]
                    base = ".".join(anchor + ([sub.module] if sub.module else []))
                else:
                    base = sub.module or ""
                names = [base] + [f"{base}.{a.name}" for a in sub.names]
            for name in names:
                if _module_file(name) is not None:
                    parts = name.split(".")
                    found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


@cache
def _parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _module_closure(modules: set[str]) -> set[Path]:
    todo, seen = set(modules), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_file(name)
        todo |= _imported(_parsed(path).body, name, path.name == "__init__.py") - seen
    return {_module_file(m) for m in seen}


def _command_sources(command: str) -> list[ast.AST]:
    """The subcommand's ``cmd_*`` function and the cli.py functions and constants it refers to."""
    tree = _parsed(PACKAGE / "cli.py")
    top = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            top[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    top[target.id] = node
    entry = f"cmd_{command.replace('-', '_')}"
    if entry not in top:
        raise KeyError(f"deepfake-xai has no subcommand {command!r} (no {entry} in cli.py)")
    todo, used = [entry], {}
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used[name] = top[name]
        todo += [n.id for n in ast.walk(top[name]) if isinstance(n, ast.Name) and n.id in top and n.id not in used]
    return [used[n] for n in sorted(used)]


def _data_files(package_init: Path) -> list[Path]:
    """Files in the package's non-package subfolders (package data such as report/data/)."""
    out = []
    for sub in sorted(p for p in package_init.parent.iterdir() if p.is_dir()):
        if not (sub / "__init__.py").exists() and not sub.name.startswith((".", "__")):
            out += [f for f in sorted(sub.rglob("*")) if f.is_file() and not f.name.startswith(".")]
    return out


@cache
def code_files(command: str) -> tuple[Path, ...]:
    """Every package file whose content decides what ``deepfake-xai <command>`` writes, cli.py aside
    (only its command function and helpers count: see :func:`code_digest`)."""
    modules = _imported(_command_sources(command), f"{NAME}.cli", False)
    files = _module_closure(modules) - {PACKAGE / "cli.py"}
    files |= {f for init in list(files) if init.name == "__init__.py" for f in _data_files(init)}
    return tuple(sorted(files))


@cache
def code_digest(command: str) -> str:
    """SHA-256 of the command's code: its cli.py function and helpers (source text) and the content
    of every file of :func:`code_files`, by path relative to the package."""
    h = hashlib.sha256()
    cli_text = (PACKAGE / "cli.py").read_text()
    for node in _command_sources(command):
        h.update(ast.get_source_segment(cli_text, node).encode() + b"\0")
    for path in code_files(command):
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
