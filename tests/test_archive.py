"""Archive extraction refuses members that escape the target folder, and writes nothing then."""

import io
import tarfile
import zipfile

import pytest

from deepfake_xai.data.archive import UnsafeArchiveError, extract_all


def _tar(path, members):
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tf.addfile(info)
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, data
                tf.addfile(info)
    return path


def test_good_archives_extract_in_full(tmp_path):
    a = _tar(tmp_path / "a.tar.gz", [("TrueFace_PreSocial/Real/FFHQ/00000.png", "file", b"x"),
                                     ("TrueFace_PreSocial/Real/FFHQ/link.png", "sym", "00000.png")])
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("TrueFace_PostSocial/Facebook/Real/FFHQ/00000_FB.jpg", b"y")
    out = extract_all([a, z], tmp_path / "data")
    assert (out / "TrueFace_PreSocial/Real/FFHQ/00000.png").read_bytes() == b"x"
    assert (out / "TrueFace_PostSocial/Facebook/Real/FFHQ/00000_FB.jpg").read_bytes() == b"y"


@pytest.mark.parametrize("members, message", [
    ([("/etc/evil", "file", b"x")], "absolute path"),
    ([("a/../../evil", "file", b"x")], "escapes"),
    ([("a/link", "sym", "../../etc/passwd")], "symlink"),
    ([("a/link", "sym", "/etc/passwd")], "symlink"),
    ([("a/hard", "hard", "../outside")], "hard link"),
])
def test_hostile_tar_members_are_refused(tmp_path, members, message):
    a = _tar(tmp_path / "evil.tar.gz", [("ok/file.png", "file", b"x"), *members])
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_all([a], tmp_path / "data")
    assert not (tmp_path / "data").exists()
    assert not any(p.name.startswith(".data") for p in tmp_path.iterdir())
    assert not (tmp_path.parent / "evil").exists() and not (tmp_path / "outside").exists()


@pytest.mark.parametrize("name", ["../evil.png", "/abs/evil.png", "a/../../evil.png"])
def test_hostile_zip_members_are_refused(tmp_path, name):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("ok.png", b"x")
        zf.writestr(zipfile.ZipInfo(name), b"x")
    with pytest.raises(UnsafeArchiveError):
        extract_all([z], tmp_path / "data")
    assert not (tmp_path / "data").exists()


def _zip_link(zf, name, target):
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (0o120777 << 16)
    zf.writestr(info, target)


@pytest.mark.parametrize("members", [
    [("a/link", "../../etc/passwd")],
    # each link inside as text (a/l1 -> .. is the root; a/l1/l2 -> .. reads as a), but on disk
    # a/l1/l2 is <root>/l2 and points above the root: the file below it would land outside
    [("a/l1", ".."), ("a/l1/l2", ".."), ("a/l1/l2/ESCAPED.txt", None)],
    # a link through a folder that does not exist yet, redirected by a later link
    [("sub/deep/s1", "d/.."), ("sub/deep/d", "../.."), ("a", "sub/deep"), ("a/s1/ESCAPED.txt", None)],
    [("Real/FFHQ/00000.png", None), ("Real/alias", "FFHQ")],  # even a harmless one
], ids=["escaping", "chain", "late-redirect", "inside"])
def test_zip_symlinks_are_refused_and_nothing_is_written(tmp_path, members):
    z = tmp_path / "links.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, target in members:
            _zip_link(zf, name, target) if target is not None else zf.writestr(name, b"x")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        extract_all([z], out / "data")
    assert not any(p.name == "ESCAPED.txt" for p in tmp_path.rglob("*"))
    assert list(out.iterdir()) == []


def test_zip_member_with_dotdot_inside_is_refused(tmp_path):
    # zipfile drops ".." when writing: the name is refused rather than written somewhere else
    z = tmp_path / "dots.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("a/../s1/file.png", b"x")
    with pytest.raises(UnsafeArchiveError, match="'..' in its path"):
        extract_all([z], tmp_path / "data")
    assert not (tmp_path / "data").exists()
