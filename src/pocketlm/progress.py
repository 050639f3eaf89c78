"""Progress of long work on stderr: a bar with the time left on a terminal, a few plain
lines (25, 50, 75 and 100%) when stderr is a pipe or a file, so logs stay short."""

from __future__ import annotations

import sys
from typing import TextIO

# Fractions of the work at which a line is printed when stderr is not a terminal.
MILESTONES = (0.25, 0.5, 0.75, 1.0)


class Progress:
    """Counts ``done`` out of ``total`` steps of one task named ``label``.

    Call it as ``progress(done, total)`` (the callback shape :func:`pocketlm.quality.evaluate`
    and :func:`pocketlm.bench.bench` use), or :meth:`update`; :meth:`close` at the end.
    ``stream`` defaults to ``sys.stderr``; ``terminal`` to whether it is a TTY.
    """

    def __init__(self, label: str, total: int | None = None, unit: str = "it",
                 stream: TextIO | None = None, terminal: bool | None = None) -> None:
        self.label, self.unit = label, unit
        self.stream = stream if stream is not None else sys.stderr
        if terminal is None:
            isatty = getattr(self.stream, "isatty", None)
            terminal = bool(isatty and isatty())
        self.terminal = terminal
        self.total = total
        self._bar = None
        self._next = 0  # index into MILESTONES of the next line to print

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def update(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        total = self.total or 0
        if self.terminal:
            self._update_bar(done, total)
            return
        while (self._next < len(MILESTONES) and total > 0
               and done >= MILESTONES[self._next] * total):
            self._next += 1
            self.stream.write(f"{self.label}: {done}/{total} {self.unit} "
                              f"({100 * done // total}%)\n")
            self.stream.flush()

    def _update_bar(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm import tqdm  # a dependency of the base install; only needed here
            self._bar = tqdm(total=total or None, desc=self.label, unit=self.unit,
                             file=self.stream, leave=True, dynamic_ncols=True)
        if total and self._bar.total != total:
            self._bar.total = total
        self._bar.update(done - self._bar.n)
        if total and done >= total:
            self.close()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
