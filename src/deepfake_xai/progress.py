"""Progress of long work: a tqdm bar on a terminal, and in a job's log (stderr not a terminal) one plain
line every ``step`` percent instead of tqdm's carriage-return redraws, which fill a log file with
hundreds of half-lines. ``DFX_PROGRESS=bar`` or ``=lines`` forces either."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator


def _terminal() -> bool:
    forced = os.environ.get("DFX_PROGRESS")
    if forced in ("bar", "lines"):
        return forced == "bar"
    return sys.stderr.isatty()


class Lines:
    """The tqdm calls the project uses (iterate, update, set_postfix, close, with), printed as lines:
    ``desc: 40% (400/1000 img, 12.3 s)``, at most one per ``step`` percent, and a last one at the end."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0, step: int = 10, unit_scale: bool = False, **_ignored):
        self.iterable, self.desc, self.unit, self.step = iterable, desc, unit, step
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.unit_scale = total, initial, unit_scale
        self.t0, self.next_pct, self.postfix, self.closed = time.perf_counter(), step, "", False

    def _count(self, v: float) -> str:
        if self.unit_scale and v >= 1e6:
            return f"{v / 1e6:.1f}M"
        return f"{int(v)}" if float(v).is_integer() else f"{v:.1f}"

    def _line(self) -> str:
        seconds = time.perf_counter() - self.t0
        done = f"{self._count(self.n)}/{self._count(self.total)}" if self.total else self._count(self.n)
        pct = f"{100 * self.n / self.total:.0f}% " if self.total else ""
        return f"{self.desc}: {pct}({done} {self.unit}, {seconds:.1f} s){self.postfix}"

    def update(self, n: float = 1) -> None:
        self.n += n
        if self.total and 100 * self.n / self.total >= self.next_pct:
            print(self._line(), file=sys.stderr, flush=True)
            while self.next_pct <= 100 * self.n / self.total:
                self.next_pct += self.step

    def set_postfix(self, **values) -> None:
        self.postfix = "; " + ", ".join(f"{k} {v}" for k, v in values.items())

    def refresh(self) -> None:
        """Print the current line now (tqdm's name): what a long first step is doing, before any update."""
        print(self._line(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if not self.closed and (not self.total or self.next_pct <= 100):  # the end, unless a line said 100%
            print(self._line(), file=sys.stderr, flush=True)
        self.closed = True

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> Lines:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Off(Lines):
    def update(self, n: float = 1) -> None:
        self.n += n

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def progress_bar(iterable: Iterable | None = None, *, disable: bool = False, **kwargs):
    """A tqdm bar on a terminal, :class:`Lines` elsewhere, nothing with ``disable`` (tqdm's keywords)."""
    if disable:
        return _Off(iterable, **kwargs)
    if _terminal():
        from tqdm import tqdm

        kwargs.pop("step", None)
        return tqdm(iterable, **kwargs)
    return Lines(iterable, **kwargs)
