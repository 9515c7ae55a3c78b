"""Which of the package's source decides what a ``deepfake-xai`` subcommand writes, and a digest of it.

A workflow should re-run a job when the code that runs in it changes: not when a file is merely
touched, checked out again or installed elsewhere, not when only a comment, a docstring or the
version number changes, and not after an edit to code the job never runs. The code of a subcommand
is its ``cmd_*`` function in cli.py (with the cli.py helpers and constants it refers to, and cli.py's
own imports) and every package module it imports, directly or through other modules, found by
reading the imports (at module level and inside functions) without importing anything; package
data folders (e.g. ``report/data/``) count with their package. Option defaults in ``build_parser``
are not part of it: the workflow passes every option that shapes an output.
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


@cache
def _nodes(path: Path) -> dict[str, list[ast.AST]]:
    """One walk over the module's syntax tree: its imports, docstrings and string literals."""
    found: dict[str, list[ast.AST]] = {"imports": [], "docstrings": [], "strings": []}
    for node in ast.walk(_source(path)[1]):
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


def _command_nodes(command: str) -> list[ast.AST]:
    """The subcommand's ``cmd_*`` function, the cli.py functions, classes and constants it refers
    to (transitively), and cli.py's module-level imports (they run for every subcommand)."""
    tree = _source(PACKAGE / "cli.py")[1]
    top: dict[str, list[ast.AST]] = {}
    imports = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            top.setdefault(node.name, []).append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            for name in _assigned_names(node):
                top.setdefault(name, []).append(node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
    entry = f"cmd_{command.replace('-', '_')}"
    if entry not in top:
        raise KeyError(f"deepfake-xai has no subcommand {command!r} (no {entry} in cli.py)")
    todo, used = [entry], {}
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used[name] = top[name]
        todo += [n.id for node in top[name] for n in ast.walk(node)
                 if isinstance(n, ast.Name) and n.id in top and n.id not in used]
    nodes = {id(n): n for name in sorted(used) for n in used[name]}
    return imports + sorted(nodes.values(), key=lambda n: n.lineno)


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
    """Every package file whose content decides what ``deepfake-xai <command>`` writes, cli.py aside
    (only its command function, helpers and imports count: see :func:`code_digest`)."""
    modules = _imported(_command_nodes(command), f"{NAME}.cli", False)
    files = _module_closure(modules) - {PACKAGE / "cli.py"}
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
    """The module's lines without comments, docstrings, a module-level ``__version__``, trailing
    spaces and blank lines: what runs, as text (the same on every Python version). Comments are
    the ``#`` outside every string literal, found from the syntax tree (no tokenizer: fast)."""
    text, tree = _source(path)
    lines = text.split("\n")
    drop_lines = {i for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
                  and "__version__" in _assigned_names(node) for i in range(node.lineno, node.end_lineno + 1)}
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
    """SHA-256 of the command's code: its cli.py function, helpers and imports, and every file of
    :func:`code_files` by its path in the package; Python files without comments, docstrings and
    blank lines, data files byte for byte."""
    h = hashlib.sha256()
    cli = PACKAGE / "cli.py"
    for node in _command_nodes(command):
        first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        h.update(_code_text(cli, first, node.end_lineno).encode() + b"\0")
    for path in code_files(command):
        content = _code_text(path).encode() if path.suffix == ".py" else path.read_bytes()
        h.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + content + b"\0")
    return h.hexdigest()
