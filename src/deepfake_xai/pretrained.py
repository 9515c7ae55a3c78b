"""Pretrained backbone weights fetched once, verified and stored as safetensors, so that training
jobs (on cluster nodes without internet) only read a local file.

A source is one of
- a timm name, optionally with its pretrained tag (``vit_base_patch16_clip_224.openai``), or none
  (the architecture's default tag): timm's own download from its hub, which needs the network;
- an ``http(s)://`` or ``file://`` URL with its SHA-256: fetched with the dataset downloader
  (resume, retries, checksum);
- a local file (safetensors, or a PyTorch state dict read with ``weights_only=True``), checked
  against its SHA-256 when one is given.

The stored file holds the backbone as the configured architecture and ``model_args`` build it
(every tensor but the classifier head, which a training job initializes for its two classes), and
a JSON record beside it says where it came from and what fitted.
"""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path, write_json
from .registry import ModelError


def is_url(source: str | None) -> bool:
    return bool(source) and source.split("://", 1)[0] in ("http", "https", "file")


def is_timm_name(source: str | None) -> bool:
    """A timm model name (with or without a ``.tag``), not a URL or a path."""
    return source is None or (not is_url(source) and "/" not in source
                              and Path(source).suffix[1:] not in ("safetensors", "pth", "pt", "bin", "ckpt"))


def check_source(source: str | None, sha256: str | None, key: str) -> None:
    """What the config validation asks of a pretrained source (no network, no file access)."""
    if is_url(source) and not sha256:
        raise ValueError(f"{key}: the URL {source!r} needs pretrained_sha256 (its SHA-256), so a changed or "
                         "truncated file is refused")
    if sha256 is not None and (len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256.lower())):
        raise ValueError(f"{key}: pretrained_sha256 {sha256!r} is not 64 hexadecimal digits")


def _from_timm(arch: str, source: str | None, model_args: dict | None):
    import timm

    name = source or arch
    try:
        model = timm.create_model(name, pretrained=True, num_classes=0, **(model_args or {}))
    except Exception as err:  # noqa: BLE001  (hub, network and file errors all end here)
        raise ModelError(f"timm could not fetch the pretrained weights of {name!r} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); without network access give "
                         "pretrained_from a URL (with pretrained_sha256) or a local file") from None
    return model.state_dict()


def _from_file(path: Path, sha256: str | None) -> dict:
    from .data.download import sha256_file
    from .models import read_state_dict

    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file {path} does not exist (pretrained_from)")
    if sha256 and sha256_file(path) != sha256.lower():
        raise ModelError(f"{path}: SHA-256 {sha256_file(path)} is not pretrained_sha256 {sha256}; "
                         "the file changed: check it and update the checksum")
    return read_state_dict(path)


def fetch(arch: str, out: str | Path, *, source: str | None = None, sha256: str | None = None,
          model_args: dict | None = None, progress: bool = True) -> dict:
    """Store ``arch``'s pretrained backbone at ``out`` (safetensors) and its record at
    ``out`` with ``.json``; return the record. Nothing is written unless every step succeeded."""
    import torch
    from safetensors.torch import save_file

    from .data.download import download, sha256_file
    from .models import create_model

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_url(source):
        check_source(source, sha256, "pretrained_from")
        suffix = Path(source.split("?", 1)[0]).suffix or ".pth"
        fetched = out.with_name(f".{out.stem}.download{suffix}")
        try:
            download(source, fetched, sha256, progress=progress)
            state = _from_file(fetched, None)
        finally:
            fetched.unlink(missing_ok=True)
        kind = "url"
    elif is_timm_name(source):
        state, kind = _from_timm(arch, source, model_args), "timm"
    else:
        state, kind = _from_file(Path(source), sha256), "file"
    model = create_model(arch, model_args=model_args)
    own = model.state_dict()
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    clf = model.get_classifier() if hasattr(model, "get_classifier") else None
    head = [name for name, m in model.named_modules() if name and m is clf]  # a job's own 2-class head
    backbone = [k for k in own if not any(k.startswith(h + ".") for h in head)]
    missing = sorted(set(backbone) - set(fitting))
    if len(fitting) < len(backbone) / 2:  # a few norm layers of equal width fit by chance
        misfit = next((f"{k}: source {tuple(v.shape)}, model {tuple(own[k].shape)}" for k, v in state.items()
                       if k in own and own[k].shape != v.shape), f"e.g. the model's {missing[0]} is not in it")
        raise ModelError(f"{source or arch}: of its {len(state)} tensors only {len(fitting)} fit the "
                         f"{len(backbone)} backbone tensors of {arch} with model_args {model_args or {}} "
                         f"({misfit}): weights of another architecture or input size?")
    with atomic_path(out, suffix=".safetensors") as tmp:
        save_file({k: v.detach().to(torch.float32).contiguous() if v.is_floating_point() else v.contiguous()
                   for k, v in fitting.items()}, str(tmp), metadata={"arch": arch, "source": source or arch})
    record = {"arch": arch, "model_args": model_args or {}, "source": source or arch, "kind": kind,
              "source_sha256": sha256, "sha256": sha256_file(out), "tensors": len(fitting),
              "skipped": sorted(set(state) - set(fitting)), "missing": missing}
    write_json(out.with_suffix(".json"), record)
    return record
