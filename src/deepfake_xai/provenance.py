"""Which of the package's source decides what a stage writes, and a digest of it.

A workflow should re-run a job when the code that runs in it changes: not when a file is merely
touched, checked out again or installed elsewhere, not when only a comment, a docstring or the
version number changes, and not after an edit to code the job never runs. The code of a stage is
its module ``stages/<stage>.py`` (its options and its logic) and every package module it imports,
directly or through other modules, found by reading the imports (at module level and inside
functions) without importing anything; package data folders (e.g. ``report/data/``) count with their
package. The command-line dispatcher (cli.py) and the process plumbing are no part of it.
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


@cache
def _source(path: Path) -> tuple[str, ast.Module]:
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    try:
        return text, ast.parse(text, filename=str(path))
    except SyntaxError as err:
        raise ValueError(f"{path}, line {err.lineno}: {err.msg} (cannot tell which code this job runs)") from None


# Texts for people, never for the result: a stage's HELP and EXAMPLE, and the help of each Option.
HELP_CONSTANTS = ("__version__", "HELP", "EXAMPLE")


def _help_text(node: ast.AST) -> list[ast.AST]:
    """The help string of an ``Option(flag, help, ...)`` call (second argument or ``help=``)."""
    if not (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "Option"):
        return []
    texts = node.args[1:2] + [k.value for k in node.keywords if k.arg == "help"]
    return [t for t in texts if isinstance(t, (ast.Constant, ast.JoinedStr))]


@cache
def _nodes(path: Path) -> dict[str, list[ast.AST]]:
    """One walk over the module's syntax tree: its imports, docstrings (and help texts) and string literals."""
    found: dict[str, list[ast.AST]] = {"imports": [], "docstrings": [], "strings": []}
    for node in ast.walk(_source(path)[1]):
        found["docstrings"] += _help_text(node)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found["imports"].append(node)
        elif isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes))):
            found["strings"].append(node)
        elif (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
              and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
              and isinstance(node.body[0].value.value, str)):
            found["docstrings"].append(node.body[0])
    return found


def _imported(nodes, module: str, is_package: bool, walk: bool = True) -> frozenset[str]:
    """Package modules imported by these AST nodes of ``module`` (or within them, with ``walk``),
    with their parent packages."""
    found = set()
    for node in nodes:
        for sub in (ast.walk(node) if walk else [node]):
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
    return frozenset(found)


@cache
def _module_imports(module: str) -> frozenset[str]:
    path = _module_file(module)
    return _imported(_nodes(path)["imports"], module, path.name == "__init__.py", walk=False)


def _module_closure(modules) -> set[Path]:
    todo, seen = set(modules), set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo |= _module_imports(name) - seen
    return {_module_file(m) for m in seen}


def _assigned_names(node: ast.AST) -> list[str]:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    return [n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)]


def stage_module(command: str) -> str:
    """The module of the stage ``command`` (``xai-cell``: ``deepfake_xai.stages.xai_cell``)."""
    module = f"{NAME}.stages.{command.replace('-', '_')}"
    if command.startswith((".", "_")) or _module_file(module) is None:
        raise KeyError(f"deepfake-xai has no stage {command!r} (no {module.replace('.', '/')}.py)")
    return module


def _data_files(package_init: Path) -> list[Path]:
    """Files in the package's non-package subfolders (package data such as report/data/), editor
    backups and hidden files left out."""
    out = []
    for sub in sorted(p for p in package_init.parent.iterdir() if p.is_dir()):
        if not (sub / "__init__.py").exists() and not sub.name.startswith((".", "__")):
            out += [f for f in sorted(sub.rglob("*")) if f.is_file() and not f.name.startswith((".", "#"))
                    and not f.name.endswith(("~", ".swp", ".bak", ".orig"))]
    return out


@cache
def code_files(command: str) -> tuple[Path, ...]:
    """Every package file whose content decides what the stage ``command`` writes: its module, the
    package modules it imports (transitively), their packages' __init__ files and package data."""
    module = stage_module(command)
    parts = module.split(".")
    files = _module_closure({".".join(parts[:i]) for i in range(1, len(parts) + 1)})
    files |= {f for init in list(files) if init.name == "__init__.py" for f in _data_files(init)}
    return tuple(sorted(files))


def _spans(node: ast.AST, lines: list[str]) -> list[tuple[int, int, int]]:
    """(row, first, last character) of each line a node covers (ast counts columns in UTF-8 bytes)."""
    def char(row: int, col: int) -> int:
        line = lines[row - 1]
        return col if line.isascii() else len(line.encode()[:col].decode(errors="ignore"))
    out = []
    for row in range(node.lineno, node.end_lineno + 1):
        lo = char(row, node.col_offset) if row == node.lineno else 0
        hi = char(row, node.end_col_offset) if row == node.end_lineno else len(lines[row - 1])
        out.append((row, lo, hi))
    return out


@cache
def _code_lines(path: Path) -> tuple[str, ...]:
    """The module's lines without comments, docstrings, help texts (module-level ``__version__``,
    ``HELP``, ``EXAMPLE`` and each option's help), trailing spaces and blank lines: what runs, as
    text (the same on every Python version). Comments are the ``#`` outside every string literal,
    found from the syntax tree (no tokenizer: fast)."""
    text, tree = _source(path)
    lines = text.split("\n")
    drop_lines = {i for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  and set(HELP_CONSTANTS) & set(_assigned_names(node))
                  for i in range(node.lineno, node.end_lineno + 1)}
    nodes = _nodes(path)
    strings: dict[int, list[tuple[int, int]]] = {}  # row -> character spans inside string literals
    for node in nodes["strings"]:
        if any("#" in lines[row - 1] for row in range(node.lineno, node.end_lineno + 1)):
            for row, lo, hi in _spans(node, lines):
                strings.setdefault(row, []).append((lo, hi))
    cut: dict[int, list[tuple[int, int]]] = {}  # row -> character spans to remove
    for doc in nodes["docstrings"]:
        for row, lo, hi in _spans(doc, lines):
            cut.setdefault(row, []).append((lo, hi))
    for row, line in enumerate(lines, start=1):
        at = line.find("#")
        while at >= 0 and any(lo <= at < hi for lo, hi in strings.get(row, [])):
            at = line.find("#", at + 1)
        if at >= 0:
            cut.setdefault(row, []).append((at, len(line)))
    out = []
    for row, line in enumerate(lines, start=1):
        if row in drop_lines:
            line = ""
        for lo, hi in sorted(cut.get(row, []), reverse=True):
            line = line[:lo] + line[hi:]
        out.append(line.rstrip())
    return tuple(out)


def _code_text(path: Path, first: int = 1, last: int | None = None) -> str:
    return "\n".join(line for line in _code_lines(path)[first - 1:last] if line)


@cache
def code_digest(command: str) -> str:
    """SHA-256 of the stage's code: every file of :func:`code_files` by its path in the package;
    Python files without comments, docstrings and blank lines, data files byte for byte."""
    h = hashlib.sha256()
    for path in code_files(command):
        content = _code_text(path).encode() if path.suffix == ".py" else path.read_bytes()
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + content + b"\0")
    return h.hexdigest()
