"""Safe archive extraction: every member is checked before anything is written.

Refused: absolute paths, ``..`` that leaves the target, symbolic and hard links that point outside
it, and device files or FIFOs; in zips, any ``..`` and any symbolic link. The archive is extracted into a temporary folder beside the target
and renamed into place, so the target is never half-extracted.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath


class UnsafeArchiveError(ValueError):
    pass


def _inside(base: PurePosixPath, rel: str) -> bool:
    """Whether ``rel`` (relative to ``base``, an archive-internal dir) stays inside the root."""
    parts: list[str] = list(base.parts)
    for comp in PurePosixPath(rel).parts:
        if comp in ("", "."):
            continue
        if comp == "..":
            if not parts:
                return False
            parts.pop()
        else:
            parts.append(comp)
    return True


def _check_name(archive: Path, name: str) -> None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if not _inside(PurePosixPath(), name.replace("\\", "/")):
        raise UnsafeArchiveError(f"{archive}: member {name!r} escapes the target folder")


def check_tar(archive: Path, tf: tarfile.TarFile) -> None:
    for m in tf.getmembers():
        _check_name(archive, m.name)
        if m.issym():
            if m.linkname.startswith("/") or not _inside(PurePosixPath(m.name).parent, m.linkname):
                raise UnsafeArchiveError(
                    f"{archive}: symlink {m.name!r} -> {m.linkname!r} points outside the target folder"
                )
        elif m.islnk():
            if m.linkname.startswith("/") or not _inside(PurePosixPath(), m.linkname):
                raise UnsafeArchiveError(
                    f"{archive}: hard link {m.name!r} -> {m.linkname!r} points outside the target folder"
                )
        elif not (m.isfile() or m.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device file or FIFO")


def check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    """Zips get a stricter rule than tars: no ``..`` in any name and no symbolic links at all.
    A chain of links can redirect a later member's folder in ways no per-member text check sees
    (and TrueFace's archives hold none); tars keep their links, checked by tarfile's data filter."""
    for info in zf.infolist():
        _check_name(archive, info.filename)
        if ".." in PurePosixPath(info.filename.replace("\\", "/")).parts:
            raise UnsafeArchiveError(f"{archive}: member {info.filename!r} has '..' in its path")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise UnsafeArchiveError(
                f"{archive}: member {info.filename!r} is a symbolic link; zip archives with links are not "
                "extracted (repack it without links, or as a tar)")


def _lands_inside(root: str, path: Path) -> bool:
    """Whether ``path``, with every symlink on disk resolved, is ``root`` or below it."""
    real = os.path.realpath(path)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def extract_into(archive: str | Path, target: str | Path, show: bool = True) -> None:
    """Extract one archive (tar, tar.gz/bz2/xz, zip) into ``target`` after checking every member
    (``show``: a progress bar over the members)."""
    from ..progress import progress_bar

    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            check_zip(archive, zf)
            root = os.path.realpath(target)
            for info in progress_bar(zf.infolist(), desc=f"extract {archive.name}", unit="file", disable=not show):
                # no links come from the zip itself; where each member lands is checked anyway
                if not _lands_inside(root, target / info.filename):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} lands outside the target folder")
                zf.extract(info, target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            check_tar(archive, tf)
            for member in progress_bar(tf.getmembers(), desc=f"extract {archive.name}", unit="file", disable=not show):
                tf.extract(member, target, filter="data")
    else:
        raise UnsafeArchiveError(f"{archive}: not a tar or zip archive")


def pack(folder: str | Path, archive: str | Path) -> Path:
    """Write ``folder`` as an uncompressed tar with fixed order, times and owners, so the same
    files always give the same bytes (and the same DVC hash). Written atomically."""
    from ..io import atomic_path

    folder, archive = Path(folder), Path(archive)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    with atomic_path(archive, suffix=".tar") as tmp:
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tf:
            for path in files:
                info = tarfile.TarInfo(path.relative_to(folder).as_posix())
                info.size, info.mtime, info.mode = path.stat().st_size, 0, 0o644
                with open(path, "rb") as fh:
                    tf.addfile(info, fh)
    return archive


def list_archives(paths: list[str | Path]) -> list[Path]:
    """Archive files named directly, or every file of a named folder (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")) if p.is_dir() else [p]
    if not out:
        raise FileNotFoundError(f"no archives in {', '.join(map(str, paths))}")
    return out


def extract_all(archives: list[str | Path], target: str | Path, show: bool = True) -> Path:
    """Extract every archive into ``target`` (replaced as a whole once all succeeded)."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for archive in archives:
            extract_into(archive, tmp, show)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target
