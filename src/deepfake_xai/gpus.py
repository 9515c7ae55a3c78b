"""One GPU per job on a multi-GPU machine.

`snakemake --resources gpu=N` runs at most N GPU jobs at once but does not say which GPU each
should use, so without help every job lands on GPU 0. Each GPU job therefore claims a free slot
(an exclusive lock on a file per GPU) before CUDA starts and sets CUDA_VISIBLE_DEVICES to it. The
operating system drops the lock when the process ends, even if it is killed, so a slot never leaks.

The number of slots is ``DFX_GPU_SLOTS`` if set, else the GPUs `nvidia-smi -L` lists. Nothing is
done when CUDA_VISIBLE_DEVICES is already set (a cluster scheduler's choice wins) or with fewer than
two GPUs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_held: list[int] = []  # file descriptors kept open for the life of the process


def gpu_count() -> int:
    """GPUs on this machine as `nvidia-smi -L` lists them (0 without the tool); no CUDA initialization."""
    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def lock_dir() -> Path:
    return Path(os.environ.get("DFX_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"deepfake-xai-gpus-{os.getuid()}")


def claim_slot(n_slots: int, directory: str | Path | None = None, timeout: float = 3600.0,
               poll: float = 0.2) -> int:
    """The index of a free slot in [0, n_slots), held until this process exits. Waits (up to
    ``timeout`` seconds) if every slot is taken, which happens only when more GPU jobs run than
    `--resources gpu=N` allows."""
    if n_slots < 1:
        raise ValueError(f"n_slots must be at least 1, not {n_slots}")
    directory = Path(directory) if directory else lock_dir()
    directory.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    while True:
        for slot in range(n_slots):
            fd = os.open(directory / f"gpu{slot}.lock", os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            _held.append(fd)
            return slot
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU slot among {n_slots} in {directory} after {timeout:.0f} s")
        time.sleep(poll)


def assign_visible_device(env: dict | None = None) -> int | None:
    """Claim a GPU slot and point CUDA_VISIBLE_DEVICES at it; the slot, or None when not needed.
    Call before anything initializes CUDA."""
    env = os.environ if env is None else env
    if "CUDA_VISIBLE_DEVICES" in env:  # chosen by the scheduler or the user ("" hides every GPU)
        return None
    requested = env.get("DFX_GPU_SLOTS")
    n = int(requested) if requested else gpu_count()
    if n < 2:
        return None
    slot = claim_slot(n)
    env["CUDA_VISIBLE_DEVICES"] = str(slot)
    return slot
