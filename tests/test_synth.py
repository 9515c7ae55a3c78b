"""The synthetic TrueFace-like generator: layout, determinism, learnable traces, platform copies."""

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_SYNTH
from PIL import Image

from deepfake_xai.data import layout
from deepfake_xai.data.social import profile_from_config, share, share_folder
from deepfake_xai.data.synth import SynthConfig, generate, make_image
from deepfake_xai.names import platforms

DEFAULT_PROFILES = platforms()


def _digest(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_images(synth_root, tmp_path):
    again = generate(tmp_path / "again", SynthConfig.from_dict({**SMALL_SYNTH, "workers": 2}), progress=False)
    assert _digest(again) == _digest(synth_root)  # worker count does not matter either
    other = generate(tmp_path / "other", SynthConfig.from_dict({**SMALL_SYNTH, "seed": 4}), progress=False)
    a, b = _digest(synth_root), _digest(other)
    pre = [k for k in a if k.startswith("TrueFace_PreSocial/")]
    assert pre and all(k in b for k in pre)
    assert sum(a[k] != b[k] for k in pre) == len(pre)


def test_trueface_layout_and_counts(synth_root):
    files = {p.relative_to(synth_root).as_posix() for p in synth_root.rglob("*") if p.is_file()}
    pre_real = [f for f in files if f.startswith("TrueFace_PreSocial/Real/FFHQ/") and f.endswith(".png")]
    assert len(pre_real) == SMALL_SYNTH["real"]
    for folder in ("Fake/StyleGAN/images-psi-0.5", "Fake/StyleGAN/images-psi-0.7",
                   "Fake/StyleGAN2/conf-f-psi-0.5", "Fake/StyleGAN2/conf-f-psi-1"):
        assert len([f for f in files if f.startswith(f"TrueFace_PreSocial/{folder}/")]) == 6
    for _platform, (folder, suffix) in {"facebook": ("Facebook", "_FB.jpg"), "telegram": ("Telegram", "_TL.jpeg"),
                                       "twitter": ("Twitter", "_TW.jpg")}.items():
        shared = [f for f in files if f.startswith(f"TrueFace_PostSocial/{folder}/")]
        assert len(shared) == (24 + 4 * 6) // 2
        assert all(f.endswith(suffix) for f in shared)
        # every shared copy has its pre-social original
        for f in shared:
            stem = Path(f).name[: -len(suffix)]
            rel_dir = Path(f).parent.relative_to(f"TrueFace_PostSocial/{folder}").as_posix()
            assert f"TrueFace_PreSocial/{rel_dir}/{stem}.png" in files


def test_real_and_fake_copies_share_format_and_size(synth_root):
    for folder in ("Facebook", "Telegram", "Twitter"):
        real = [p for p in (synth_root / "TrueFace_PostSocial" / folder / "Real").rglob("*") if p.is_file()]
        fake = [p for p in (synth_root / "TrueFace_PostSocial" / folder / "Fake").rglob("*") if p.is_file()]
        fmts = {(Image.open(p).format, Image.open(p).size) for p in real + fake}
        assert len(fmts) == 1, f"{folder}: real and fake copies differ in format/size: {fmts}"
    pre = {(Image.open(p).format, Image.open(p).size) for p in (synth_root / "TrueFace_PreSocial").rglob("*.png")}
    assert pre == {("PNG", (32, 32))}


def test_evidence_region_recorded_for_every_fake_only(synth_root):
    ev = pd.read_csv(synth_root / layout.EVIDENCE_FILE)
    fakes = {p.relative_to(synth_root).as_posix() for p in synth_root.rglob("*")
             if p.is_file() and "/Fake/" in p.as_posix()}
    assert set(ev["path"]) == fakes
    assert ((ev[["x0", "y0"]].to_numpy() < ev[["x1", "y1"]].to_numpy()).all())
    assert ev[["x0", "y0", "x1", "y1"]].stack().between(0, 1).all()


def _spectrum(images: list[np.ndarray]) -> np.ndarray:
    out = 0
    for img in images:
        g = img.astype(float).mean(2)
        out = out + np.abs(np.fft.fft2(g - g.mean()))
    return out / len(images)


def test_fakes_carry_the_upsampling_trace_in_the_spectrum():
    cfg = SynthConfig(seed=1, image_size=64)
    real = [np.asarray(make_image(cfg, "ffhq", None, i)[0]) for i in range(12)]
    fake = [np.asarray(make_image(cfg, "stylegan2", 1.0, i)[0]) for i in range(12)]
    sr, sf = _spectrum(real), _spectrum(fake)
    # energy at the Nyquist corner (period-2 pattern) relative to the whole high band
    nyq_real, nyq_fake = sr[32, 32] / sr[16:48, 16:48].mean(), sf[32, 32] / sf[16:48, 16:48].mean()
    assert nyq_fake > 5 * nyq_real


def test_diffusion_fakes_carry_another_trace_no_checkerboard_a_low_pass_and_a_top_band_residual():
    """The second family: no period-2 peak (the Nyquist bin no higher than its neighbours); less energy than
    a real in the middle band (the low-pass) but the top band restored by the shaped residual, where a
    GAN fake has lost it: a signature of its own."""
    cfg = SynthConfig(seed=1, image_size=64)
    spectra = {g: _spectrum([np.asarray(make_image(cfg, g, None if g == "ffhq" else 0.7, i)[0]) for i in range(12)])
               for g in ("ffhq", "stylegan2", "diffusion")}
    nyq = {g: s[32, 32] / s[16:48, 16:48].mean() for g, s in spectra.items()}
    assert nyq["stylegan2"] > 20 and nyq["diffusion"] < 1.5  # a peak there, or none (below its neighbours)
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(64), np.fft.fftfreq(64)))  # cycles per pixel
    def share(lo, hi):  # of the band's energy, relative to the low band's
        return {g: s[(f > lo) & (f < hi)].mean() / s[(f > 0.02) & (f < 0.08)].mean() for g, s in spectra.items()}

    middle, top = share(0.15, 0.3), share(0.46, 0.71)
    assert middle["diffusion"] < 0.8 * middle["ffhq"], middle
    assert top["diffusion"] > 1.3 * top["stylegan2"] and top["stylegan2"] < top["ffhq"], top


def test_fakes_have_the_localized_cue_inside_their_box():
    cfg = SynthConfig(seed=2, image_size=64)
    img, box = make_image(cfg, "stylegan", 0.7, 0)
    assert box is not None and make_image(cfg, "ffhq", None, 0)[1] is None
    x0, y0, x1, y1 = (int(v * 64) for v in box)
    assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64


def test_psi_controls_variety():
    from deepfake_xai.data.synth import sample_face

    rng = np.random.default_rng(0)
    low = np.array([[v for k, v in sample_face(rng, 0.5).items() if not k.startswith("bg")] for _ in range(300)])
    high = np.array([[v for k, v in sample_face(rng, 1.0).items() if not k.startswith("bg")] for _ in range(300)])
    assert np.all(low.std(0) < high.std(0))


def test_platform_simulator_resizes_and_recompresses(tmp_path):
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8))
    fb = Image.open(__import__("io").BytesIO(share(img, DEFAULT_PROFILES["facebook"])))
    assert fb.format == "JPEG" and fb.size == (70, 70)
    tl = Image.open(__import__("io").BytesIO(share(img, DEFAULT_PROFILES["telegram"])))
    assert tl.size == (100, 100)
    capped = profile_from_config("twitter", {"max_side": 50})
    assert Image.open(__import__("io").BytesIO(share(img, capped))).size == (50, 50)
    # the user command: any folder of images
    src = tmp_path / "in" / "sub"
    src.mkdir(parents=True)
    img.save(src / "a.png")
    out = share_folder(tmp_path / "in", tmp_path / "out", DEFAULT_PROFILES["twitter"], progress=False)
    assert [p.relative_to(tmp_path / "out").as_posix() for p in out] == ["sub/a_TW.jpg"]


def test_share_command_takes_quiet_anywhere_and_names_a_missing_folder(synth_root, tmp_path):
    import subprocess
    import sys

    src = synth_root / "TrueFace_PreSocial/Real/FFHQ"
    cmd = [sys.executable, "-m", "deepfake_xai.cli", "share", str(src), str(tmp_path / "tw"), "--platform", "twitter"]
    done = subprocess.run([*cmd, "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "%|" not in done.stderr  # no progress bar
    assert len(list((tmp_path / "tw").iterdir())) == len(list(src.iterdir()))
    missing = subprocess.run([*cmd[:4], str(tmp_path / "nowhere"), *cmd[5:]], capture_output=True, text=True)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"error: source folder {tmp_path / 'nowhere'} does not exist" in missing.stderr


def test_quiet_after_a_double_dash_is_an_argument_not_the_option(tmp_path, monkeypatch):
    from deepfake_xai.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"--quiet"):  # the archive named "--quiet" is looked for
        main(["extract", "--out", "d", "--", "--quiet"])
    assert not (tmp_path / "d").exists()
