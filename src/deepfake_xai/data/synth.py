"""Synthetic TrueFace-like data: procedurally drawn faces written in the TrueFace layout.

Why it exists: TrueFace is 210,000 images behind a download; this set lets the whole DAG run on a
laptop in minutes and, unlike TrueFace, it knows *where* the evidence of each fake is, so heatmaps
can be scored for localization.

- "Real" images imitate a camera: the face is drawn at ``render_scale`` times the output size,
  downsampled with an anti-aliasing filter, and given signal-dependent sensor noise.
- "Fake" images imitate a GAN: drawn at half the output size and upsampled by zero insertion and a
  fixed interpolation kernel (the transposed-convolution trace: periodic peaks in the spectrum, a
  faint checkerboard), with a smoother noise floor. ``psi`` scales how far each face's parameters
  deviate from the average face, as the truncation trick does. Every fake also carries one localized
  cue, mismatched eyes (one iris of another colour and size), whose box is recorded in
  ``evidence.csv`` (normalized x0, y0, x1, y1).
- "Diffusion" fakes (a second family, another trace): drawn at full size with no upsampling (no
  checkerboard, no periodic peaks) with a camera-like noise floor, over-smoothed by a Gaussian
  low-pass (a denoiser's output: less energy than a camera's in the middle band) and given a noise
  residual shaped by a difference of Gaussians (the top band restored, spread over a ring, not in
  peaks). A
  detector that learned the GAN trace alone need not recognize them: the hold-out cell's question.
- "Controlled" pairs (``controlled``, none by default): a real image and its fake twin, identical
  pixel for pixel except inside one square region at a random place (``controlled_region`` of the
  side), where the same face went through the GAN path with a doubled fingerprint. A model that
  tells the twins apart can only have used that region, so the region is the ground truth an
  explanation score is checked against (the explanation-quality report's controlled check). They
  are pre-social only (no shared copies).
- Post-social copies of a subset of the pre-social images go through the social-platform simulator.

Everything is deterministic for a seed: each image has its own generator seeded by
(seed, class, index), so the output does not depend on the number of worker processes.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..names import Platform
from . import layout
from .social import iter_profiles, share

# (mean, std) of each face parameter, in units of the canvas side. psi scales the std.
FACE_PARAMS: dict[str, tuple[float, float]] = {
    "face_cx": (0.50, 0.02),
    "face_cy": (0.54, 0.02),
    "face_rx": (0.27, 0.03),
    "face_ry": (0.34, 0.03),
    "skin": (0.45, 0.30),
    "hair": (0.80, 0.70),
    "hair_len": (0.50, 0.25),
    "eye_y": (0.46, 0.015),
    "eye_dx": (0.115, 0.01),
    "eye_rx": (0.062, 0.008),
    "eye_ry": (0.036, 0.005),
    "iris": (1.00, 0.70),
    "brow_w": (0.014, 0.004),
    "nose_len": (0.09, 0.015),
    "mouth_y": (0.69, 0.015),
    "mouth_w": (0.09, 0.015),
    "mouth_open": (0.012, 0.010),
    "light_dir": (0.0, 1.0),
    "light_strength": (0.20, 0.08),
}

SKIN = np.array([[238, 205, 180], [198, 150, 115], [120, 80, 58]], dtype=np.float64)
HAIR = np.array([[30, 24, 22], [110, 72, 42], [222, 192, 128]], dtype=np.float64)
IRIS = np.array([[70, 110, 175], [80, 135, 80], [105, 62, 30]], dtype=np.float64)
CLASS_IDS = {"ffhq": 0, "stylegan": 1, "stylegan2": 2, "diffusion": 3, "controlled": 4}
FAKE_GENERATORS = ("stylegan", "stylegan2", "diffusion")


@dataclass
class SynthConfig:
    """Sizes and counts of the synthetic dataset (the ``data.synthetic`` config section)."""

    seed: int = 0
    image_size: int = 64
    render_scale: int = 4
    real: int = 200
    fake: dict = field(
        default_factory=lambda: {"stylegan": {0.5: 50, 0.7: 50}, "stylegan2": {0.5: 50, 1.0: 50}}
    )
    shared_fraction: float = 0.5
    fingerprint_strength: float = 2.0
    controlled: int = 0  # real/fake twin pairs differing only inside one known region
    controlled_region: float = 0.5  # the region's side, as a fraction of the image side
    workers: int = 1
    # trueface: TrueFace_PreSocial + TrueFace_PostSocial/<Platform>; folders: the CNNDetection/ForenSynths
    # convention <generator>/0_real|1_fake/... (no shared copies; reals spread over the generators' folders)
    layout: str = "trueface"
    platforms: dict[str, Platform] = field(default_factory=lambda: {p.name: p for p in iter_profiles(None)})

    @classmethod
    def from_dict(cls, cfg: dict, platforms: dict[str, Platform] | None = None) -> SynthConfig:
        fake = {
            gen: {float(psi): int(n) for psi, n in per_psi.items()}
            for gen, per_psi in cfg.get("fake", {}).items()
        }
        kwargs = {k: v for k, v in cfg.items() if k not in ("fake",)}
        out = cls(**kwargs)
        if fake:
            out.fake = fake
        if platforms is not None:
            out.platforms = platforms
        return out


def _lerp_palette(palette: np.ndarray, t: float) -> np.ndarray:
    t = float(np.clip(t, 0, len(palette) - 1))
    i = min(int(t), len(palette) - 2)
    return palette[i] * (1 - (t - i)) + palette[i + 1] * (t - i)


def sample_face(rng: np.random.Generator, psi: float) -> dict[str, float]:
    """Face parameters: the average face plus ``psi`` times a (truncated) random deviation."""
    z = np.clip(rng.standard_normal(len(FACE_PARAMS)), -2.0, 2.0)
    face = {name: mean + psi * std * zi for (name, (mean, std)), zi in zip(FACE_PARAMS.items(), z)}
    # The backdrop is the photo's, not the face's: not truncated, so it is no shortcut to the label.
    face["bg_hue"] = rng.uniform(0.0, 1.0)
    face["bg_val"] = rng.uniform(0.4, 0.85)
    return face


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def render_face(
    p: dict[str, float], size: int, odd_eye: int | None = None
) -> tuple[np.ndarray, tuple[float, float, float, float] | None]:
    """Draw a face on a ``size`` x ``size`` canvas; return float RGB and the odd eye's box.

    ``odd_eye`` (0 left, 1 right) gives that eye another iris colour and size: the localized cue of
    fakes. The box is in normalized coordinates.
    """
    s = float(size)
    img = Image.new("RGB", (size, size))
    draw = ImageDraw.Draw(img)
    # background: vertical gradient of one hue
    top = _hsv_to_rgb(p["bg_hue"], 0.35, np.clip(p["bg_val"], 0.2, 0.95))
    ramp = np.linspace(1.08, 0.85, size)[:, None, None]
    bg = np.clip(top[None, None, :] * ramp, 0, 255) * np.ones((1, size, 1))
    img.paste(Image.fromarray(bg.astype(np.uint8)))

    def col(c: np.ndarray) -> tuple[int, int, int]:
        return tuple(int(v) for v in np.clip(c, 0, 255))

    def ell(cx, cy, rx, ry, fill):
        draw.ellipse([(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s], fill=fill)

    cx, cy, rx, ry = p["face_cx"], p["face_cy"], p["face_rx"], p["face_ry"]
    skin = _lerp_palette(SKIN, p["skin"] * 2)
    hair = _lerp_palette(HAIR, p["hair"])
    hair_len = float(np.clip(p["hair_len"], 0.0, 1.0))
    # hair behind the head, neck, ears, face
    ell(cx, cy - 0.05 + 0.10 * hair_len, rx * 1.28, ry * (1.05 + 0.3 * hair_len), col(hair))
    draw.rectangle([(cx - rx * 0.45) * s, cy * s, (cx + rx * 0.45) * s, s], fill=col(skin * 0.88))
    for side in (-1, 1):
        ell(cx + side * rx * 0.98, cy + 0.01, rx * 0.16, ry * 0.2, col(skin * 0.93))
    ell(cx, cy, rx, ry, col(skin))
    # fringe over the forehead
    draw.chord(
        [(cx - rx * 1.02) * s, (cy - ry * 1.05) * s, (cx + rx * 1.02) * s, (cy - ry * 0.25) * s],
        180, 360, fill=col(hair),
    )
    # eyes
    iris = _lerp_palette(IRIS, p["iris"])
    box = None
    for side, eye in ((-1, 0), (1, 1)):
        ex, ey = cx + side * p["eye_dx"], p["eye_y"]
        erx, ery = abs(p["eye_rx"]), abs(p["eye_ry"])
        ell(ex, ey, erx, ery, (245, 245, 240))
        ir = ery * 0.95
        iris_c = iris
        if odd_eye == eye:
            iris_c = _lerp_palette(IRIS, (p["iris"] + 1.5) % 3.0)
            ir = ery * 1.25
            pad = 1.3
            box = (
                float(np.clip(ex - erx * pad, 0, 1)), float(np.clip(ey - ery * pad * 1.4, 0, 1)),
                float(np.clip(ex + erx * pad, 0, 1)), float(np.clip(ey + ery * pad * 1.4, 0, 1)),
            )
        ell(ex, ey, ir, ir, col(iris_c))
        ell(ex, ey, ir * 0.45, ir * 0.45, (15, 12, 12))
        ell(ex - ir * 0.3, ey - ir * 0.3, ir * 0.15, ir * 0.15, (255, 255, 255))
        # brow
        bw = max(1, int(abs(p["brow_w"]) * s))
        draw.line(
            [((ex - erx * 1.1) * s, (ey - ery * 2.2) * s), ((ex + erx * 1.1) * s, (ey - ery * 2.5) * s)],
            fill=col(hair * 0.8), width=bw,
        )
    # nose and mouth
    nl = p["nose_len"]
    draw.line([(cx * s, (p["eye_y"] + 0.02) * s), ((cx + 0.012) * s, (p["eye_y"] + nl + 0.03) * s)],
              fill=col(skin * 0.7), width=max(1, int(0.008 * s)))
    lip = col(skin * np.array([1.05, 0.62, 0.62]))
    ell(cx, p["mouth_y"], abs(p["mouth_w"]), 0.018 + max(0.0, p["mouth_open"]), lip)
    if p["mouth_open"] > 0.008:
        ell(cx, p["mouth_y"], abs(p["mouth_w"]) * 0.7, p["mouth_open"], (60, 20, 25))

    arr = np.asarray(img, dtype=np.float64)
    # directional lighting
    yy, xx = np.mgrid[0:size, 0:size] / s - 0.5
    ang = p["light_dir"]
    shade = 1.0 + p["light_strength"] * (xx * math.cos(ang) + yy * math.sin(ang)) * 2
    arr = arr * shade[:, :, None]
    return arr, box


def _camera(arr: np.ndarray, out_size: int, rng: np.random.Generator) -> np.ndarray:
    """Real path: anti-aliased downsampling and Poisson-Gaussian sensor noise."""
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    small = np.asarray(img.resize((out_size, out_size), Image.Resampling.LANCZOS), dtype=np.float64)
    sigma_read = rng.uniform(1.0, 3.0)
    gain = rng.uniform(0.02, 0.06)
    noise = rng.standard_normal(small.shape) * np.sqrt(sigma_read**2 + gain * small)
    return small + noise


# 1-D interpolation kernel of a stride-2 transposed convolution with uneven taps: its overlap is
# not constant across output pixels, which is what leaves the checkerboard.
_UPSAMPLE_KERNELS = {
    "stylegan": np.array([0.30, 1.00, 0.75, 0.05]),
    "stylegan2": np.array([0.15, 0.90, 0.95, 0.25]),
}


def _generator(arr: np.ndarray, out_size: int, generator: str, strength: float,
               rng: np.random.Generator) -> np.ndarray:
    """Fake path: render at half size, upsample x2 by zero insertion + a fixed kernel."""
    half = out_size // 2
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    low = np.asarray(img.resize((half, half), Image.Resampling.LANCZOS), dtype=np.float64)
    up = np.zeros((out_size, out_size, 3))
    up[::2, ::2] = low
    k = _UPSAMPLE_KERNELS[generator]
    k2 = np.outer(k, k)
    k2 = k2 / k2.sum() * 4.0
    out = np.zeros_like(up)
    pad = np.pad(up, ((1, 2), (1, 2), (0, 0)), mode="edge")
    for dy in range(4):
        for dx in range(4):
            out += k2[dy, dx] * pad[dy : dy + out_size, dx : dx + out_size]
    # the generator's fixed high-frequency fingerprint (period 2), faint
    yy, xx = np.mgrid[0:out_size, 0:out_size]
    out += strength * (((yy + xx) % 2) * 2 - 1)[:, :, None] * np.array([1.0, 0.8, 1.1])
    out += rng.standard_normal(out.shape) * rng.uniform(0.3, 1.2)
    return out


def _gaussian(arr: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian filter of an (H, W, C) array, edges mirrored."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = np.arange(-radius, radius + 1)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    k /= k.sum()
    pad = np.pad(arr, ((radius, radius), (radius, radius), (0, 0)), mode="reflect")
    h, w = arr.shape[:2]
    rows = sum(k[i] * pad[:, i : i + w] for i in range(len(k)))
    return sum(k[i] * rows[i : i + h] for i in range(len(k)))


def _diffusion(arr: np.ndarray, out_size: int, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Diffusion-like path: an anti-aliased full-size rendering with camera-like sensor noise (a model
    trained on photos reproduces their noise floor), over-smoothed by a low-pass (a denoiser's last
    step), then a band-pass residual (difference of Gaussians of white noise: a high-frequency ring,
    no periodic peaks)."""
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    full = np.asarray(img.resize((out_size, out_size), Image.Resampling.LANCZOS), dtype=np.float64)
    noisy = full + rng.standard_normal(full.shape) * np.sqrt(rng.uniform(1.0, 3.0) ** 2 + rng.uniform(0.02, 0.06) * full)
    smooth = _gaussian(noisy, 0.7)
    white = rng.standard_normal((out_size, out_size, 1))
    band = _gaussian(white, 0.5) - _gaussian(white, 1.0)
    band /= band.std() + 1e-12
    return smooth + 3.0 * strength * band * np.array([1.0, 0.9, 1.05])


def make_image(cfg: SynthConfig, generator: str, psi: float | None, index: int):
    """One pre-social image as a PIL image, and the evidence box of a fake (None for reals)."""
    rng = np.random.default_rng([cfg.seed, CLASS_IDS[generator], int(round((psi or 1) * 100)), index])
    face = sample_face(rng, 1.0 if psi is None else psi)
    if generator == "ffhq":
        arr, _ = render_face(face, cfg.image_size * cfg.render_scale)
        out, box = _camera(arr, cfg.image_size, rng), None
    else:
        odd = int(rng.integers(0, 2))
        arr, box = render_face(face, cfg.image_size, odd_eye=odd)
        arr, _ = render_face(face, cfg.image_size * 2, odd_eye=odd)
        if generator == "diffusion":
            out = _diffusion(arr, cfg.image_size, cfg.fingerprint_strength, rng)
        else:
            out = _generator(arr, cfg.image_size, generator, cfg.fingerprint_strength, rng)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8)), box


def make_controlled(cfg: SynthConfig, index: int):
    """One controlled pair: the real twin and the fake (PIL images), equal outside the region, and
    the region's normalized box."""
    rng = np.random.default_rng([cfg.seed, CLASS_IDS["controlled"], 0, index])
    face = sample_face(rng, 1.0)
    size = cfg.image_size
    real = _camera(render_face(face, size * cfg.render_scale)[0], size, rng)
    gan = _generator(render_face(face, size * 2)[0], size, "stylegan", 2 * cfg.fingerprint_strength, rng)
    side = max(2, int(round(cfg.controlled_region * size)))
    x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
    real = np.clip(np.rint(real), 0, 255).astype(np.uint8)
    fake = real.copy()
    fake[y0:y0 + side, x0:x0 + side] = np.clip(np.rint(gan[y0:y0 + side, x0:x0 + side]), 0, 255).astype(np.uint8)
    return Image.fromarray(real), Image.fromarray(fake), (x0 / size, y0 / size, (x0 + side) / size, (y0 + side) / size)


def _classes(cfg: SynthConfig) -> list[tuple[str, float | None, int]]:
    out: list[tuple[str, float | None, int]] = [("ffhq", None, int(cfg.real))]
    for gen in FAKE_GENERATORS:
        for psi, n in sorted(cfg.fake.get(gen, {}).items()):
            out.append((gen, float(psi), int(n)))
    if cfg.controlled:
        out.append(("controlled", None, int(cfg.controlled)))
    return out


def _stem(generator: str, index: int) -> str:
    return f"{index:05d}" if generator == "ffhq" else f"seed{index:04d}"


def _shared_indices(cfg: SynthConfig, generator: str, psi: float | None, n: int) -> np.ndarray:
    """Which images of a class are shared on the platforms (the same subset on every platform)."""
    k = int(round(n * cfg.shared_fraction))
    rng = np.random.default_rng([cfg.seed, 999, CLASS_IDS[generator], int(round((psi or 1) * 100))])
    return np.sort(rng.permutation(n)[:k])


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _write_controlled(cfg: SynthConfig, root: Path, index: int) -> list[tuple[str, tuple | None]]:
    real, fake, box = make_controlled(cfg, index)
    stem = f"ctrl{index:05d}"
    if cfg.layout == "folders":
        rels = (f"controlled/0_real/{stem}.png", f"controlled/1_fake/{stem}.png")
    else:
        rels = (f"{layout.platform_root(None)}/{layout.class_dir('ffhq', None)}/{stem}.png",
                f"{layout.platform_root(None)}/{layout.class_dir('controlled', None)}/{stem}.png")
    _write(root / rels[0], _png(real))
    _write(root / rels[1], _png(fake))
    return [(rels[0], None), (rels[1], box)]


def _write_one(args) -> list[tuple[str, tuple | None]]:
    cfg, root, generator, psi, index, shared = args
    if generator == "controlled":
        return _write_controlled(cfg, root, index)
    img, box = make_image(cfg, generator, psi, index)
    rel_dir = layout.class_dir(generator, psi)
    stem = _stem(generator, index)
    rows = []
    if cfg.layout == "folders":
        fakes = [g for g in FAKE_GENERATORS if cfg.fake.get(g)] or ["stylegan"]
        group = fakes[index % len(fakes)] if generator == "ffhq" else generator
        rel = (f"{group}/0_real/{stem}.png" if generator == "ffhq"
               else f"{group}/1_fake/{layout.psi_folder(generator, psi)}/{stem}.png")
        shared = False
    else:
        rel = f"{layout.platform_root(None)}/{rel_dir}/{stem}.png"
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    _write(root / rel, buf.getvalue())
    rows.append((rel, box))
    if shared:
        for profile in cfg.platforms.values():
            rel = f"{layout.platform_root(profile)}/{rel_dir}/{profile.shared_name(stem)}"
            _write(root / rel, share(img, profile))
            rows.append((rel, box))
    return rows


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def generate(root: str | Path, cfg: SynthConfig, progress: bool = True) -> Path:
    """Write the dataset below ``root`` (replaced as a whole: built in a temporary folder, then
    renamed, so a killed run never leaves a partial dataset that looks complete)."""
    from ..progress import progress_bar

    root = Path(root)
    tmp = root.with_name(f".{root.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    jobs = []
    for generator, psi, n in _classes(cfg):
        shared = set() if generator == "controlled" else set(_shared_indices(cfg, generator, psi, n).tolist())
        jobs += [(cfg, tmp, generator, psi, i, i in shared) for i in range(n)]
    evidence = []
    bar = progress_bar(total=len(jobs), desc="synthesize", unit="img", disable=not progress)
    if cfg.workers > 1:
        with ProcessPoolExecutor(cfg.workers) as pool:
            for rows in pool.map(_write_one, jobs, chunksize=16):
                evidence += rows
                bar.update()
    else:
        for job in jobs:
            evidence += _write_one(job)
            bar.update()
    bar.close()
    with open(tmp / layout.EVIDENCE_FILE, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "x0", "y0", "x1", "y1", "cue"])
        for rel, box in sorted(evidence):
            if box is not None:
                cue = "controlled_region" if "/Controlled/" in rel or rel.startswith("controlled/") else "mismatched_eyes"
                writer.writerow([rel, *(f"{v:.6f}" for v in box), cue])
    if root.exists():
        shutil.rmtree(root)
    tmp.rename(root)
    return root
