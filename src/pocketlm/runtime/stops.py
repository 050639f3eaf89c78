"""Stop sequences over streamed text: a stop string may span token (and piece) boundaries,
so text that could be the start of one is held back until it is known not to be."""

from __future__ import annotations


class StopMatcher:
    """Feed text pieces with :meth:`push`; it returns the text that is safe to show.

    After a stop sequence is found, :attr:`stopped` is true and the text before it (never
    the stop sequence itself) has been returned. :meth:`finish` releases what was held back
    when the text ends without a stop.
    """

    def __init__(self, stops: tuple[str, ...] | list[str]) -> None:
        self.stops = tuple(s for s in stops if s)
        self.stopped = False
        self._held = ""

    def push(self, piece: str) -> str:
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text = self._held + piece
        hits = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped, self._held = True, ""
            return text[:min(hits)]
        keep = self._pending(text)
        self._held = text[len(text) - keep:] if keep else ""
        return text[:len(text) - keep]

    def finish(self) -> str:
        out, self._held = self._held, ""
        return "" if self.stopped else out

    def _pending(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins some stop sequence."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), best, -1):
                if text.endswith(stop[:n]):
                    best = n
                    break
        return best
