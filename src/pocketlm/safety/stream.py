"""Checking a suggestion while it streams in, a token at a time."""

from __future__ import annotations

import re

from .filter import _CHUNK, _EDGE, MAX_PIECES, Match, ProfanityFilter, _fold

_HOLD_CHUNKS = 8  # trailing chunks that may still be the first pieces of a split word


class StreamGuard:
    """Checks a suggestion as it streams in; releases only text that passed.

    ``prefix`` is the end of the prompt, so that a suggestion that finishes the prompt's
    last word ("fu" + "ck") is caught; matches that lie wholly inside it are not reported.
    Complete words are released once checked; the last, still growing word and trailing
    pieces that could start a split word ("f u c", "sh", "as") are held back until more
    arrives.
    """

    def __init__(self, flt: ProfanityFilter, prefix: str = "") -> None:
        self.filter = flt
        self.prefix = prefix
        self.text = ""
        self.released = 0
        self.match: Match | None = None

    def push(self, piece: str) -> str:
        """Add a piece; return the text now safe to show ("" if none, or once blocked)."""
        if self.match is not None:
            return ""
        self.text += piece
        return self._release(self._safe_end())

    def finish(self) -> str:
        """The rest of the text, if the whole suggestion passed."""
        if self.match is not None:
            return ""
        return self._release(len(self.text), final=True)

    def _safe_end(self) -> int:
        """End of the text made of complete words that no later piece can change."""
        end = len(self.text)
        if end and not self.text[-1].isspace():
            end = re.search(r"\S*$", self.text).start()  # the last word may still grow
        chunks = list(_CHUNK.finditer(self.text, self.released, end))[-_HOLD_CHUNKS:]
        # Step back to the earliest trailing chunk from which the rest could still become a
        # blocked word: "f u c" may become "f u c k", "sh" may become "sh it".
        for i, chunk in enumerate(chunks):
            rest = "".join(c.group().strip(_EDGE) for c in chunks[i:])
            single = i == len(chunks) - 1 and len(chunk.group().strip(_EDGE)) <= 1
            if single or self.filter.could_continue(_fold(rest)[0]):
                return chunk.start()
        return end

    def _release(self, end: int, final: bool = False) -> str:
        if end <= self.released or (not final and not self.text[self.released:end].strip()):
            return ""  # nothing new, or only spaces: they go out with the next word
        whole = self.prefix + self.text[:end]
        # Text released before was checked: look again only as far back as a split word
        # reaching into the new text could start, so a long suggestion costs O(n), not O(n^2).
        seam = len(self.prefix) + self.released
        starts = [m.start() for m in _CHUNK.finditer(whole, 0, seam)]
        begin = starts[-MAX_PIECES] if len(starts) >= MAX_PIECES else 0
        shift = len(self.prefix) - begin
        for m in self.filter.find(whole[begin:]):
            if m.end > shift:
                self.match = Match(m.text, m.term, max(m.start - shift, 0), m.end - shift)
                return ""
        out = self.text[self.released:end]
        self.released = end
        return out
