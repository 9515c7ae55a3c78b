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


def test_zip_symlink_escaping_is_refused(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("a/link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "../../etc/passwd")
    with pytest.raises(UnsafeArchiveError, match="symlink"):
        extract_all([z], tmp_path / "data")


def _zip_link(zf, name, target):
    info = zipfile.ZipInfo(name)
    info.create_system, info.external_attr = 3, (0o120777 << 16)
    zf.writestr(info, target)


def test_zip_symlink_chain_cannot_climb_out(tmp_path):
    # Each link is inside as text (a/l1 -> .. is the root; a/l1/l2 -> .. reads as a), but on disk
    # a/l1/l2 is <root>/l2 and points above the root: the file below it would land outside.
    z = tmp_path / "chain.zip"
    with zipfile.ZipFile(z, "w") as zf:
        _zip_link(zf, "a/l1", "..")
        _zip_link(zf, "a/l1/l2", "..")
        zf.writestr("a/l1/l2/ESCAPED.txt", b"x")
    out = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="outside the target folder"):
        extract_all([z], out / "data")
    assert not any(p.name == "ESCAPED.txt" for p in tmp_path.rglob("*"))
    assert not (out / "data").exists() and not any(p.name.startswith(".data") for p in out.iterdir())


def test_zip_member_named_like_an_earlier_symlink_is_refused(tmp_path):
    # Writing it would follow the link: refused rather than guessing which of the two was meant.
    z = tmp_path / "over.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("target.txt", b"keep")
        _zip_link(zf, "link", "target.txt")
        zf.writestr("link", b"overwritten")
    with pytest.raises(UnsafeArchiveError, match="through a symlink"):
        extract_all([z], tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_zip_links_that_stay_inside_still_extract(tmp_path):
    z = tmp_path / "ok.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("Real/FFHQ/00000.png", b"x")
        _zip_link(zf, "Real/alias", "FFHQ")
        zf.writestr("Real/alias/00001.png", b"y")
    out = extract_all([z], tmp_path / "data")
    assert (out / "Real/FFHQ/00001.png").read_bytes() == b"y"
