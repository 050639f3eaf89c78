"""The matcher: normalisation (case, accents, look-alikes, leetspeak, stretched letters),
whole words, words split into pieces ("f uck", "sh it") and words glued to others
("fuckoff"). See the package docstring for the rules and why."""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

from .lexicon import (BLOCKED_WORDS, EMBEDDED_ROOTS, MIN_GLUED, SPACED_COMPOUNDS, SUFFIXES,
                      TEXT_SPEAK, common_words, innocent_names, segments)

_PLAIN_ROOTS = frozenset({"fuck", "shit", "cunt", "bitch", "whore", "slut", "twat", "wank"})

# Characters that stand for letters. Ambiguous ones map to several letters; every
# combination is tried (bounded by MAX_VARIANTS).
LEET: dict[str, tuple[str, ...]] = {
    "0": ("o",), "1": ("i", "l"), "3": ("e",), "4": ("a",), "5": ("s",), "7": ("t",),
    "8": ("b",), "9": ("g",), "@": ("a",), "$": ("s",), "!": ("i",), "|": ("i", "l"),
    "+": ("t",), "€": ("e",), "¡": ("i",),
}
# Cyrillic and Greek letters that look like Latin ones (NFKD does not map these).
LOOKALIKES = str.maketrans("аеорсухіјѕԁɡмнкτοαβνιεχ", "aeopcyxijsdgmhktoabviex")
# Invisible characters used to split a word without showing it.
INVISIBLE = frozenset("\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e")
# Characters that hide a letter: "f*ck", "sh#t".
MASKS = frozenset("*#%")
# Punctuation that separates spelled-out letters or compound parts inside a chunk.
_SEP_CHARS = r"-_.~/\\,;:'\"`()\[\]{}<>=^&"
_SEPARATORS = re.compile(f"[{_SEP_CHARS}]+")
# Joining the parts of a chunk keeps apostrophes: "who're" is not "whore".
_JOIN_SEPARATORS = re.compile(f"[{_SEP_CHARS.replace(chr(39), '')}]+")
_PARTS = re.compile(f"[^{_SEP_CHARS}]+")
_EDGE = ".,;:!?\"'`()[]{}<>~-_"
# What may stand between the pieces of a word split across chunks ("f. u. c. k", "f- uck"):
# a comma, apostrophe ("who 're") or other punctuation ends the word instead.
_JOINERS = frozenset(".-_~*")
_CHUNK = re.compile(r"\S+")
MAX_VARIANTS = 64
MAX_WORD = 40  # longer "words" are noise (URLs, hashes): not worth the variants
MAX_PIECES = 16  # a split word has at most this many pieces ("m o t h e r f u c k e r")


@dataclass(frozen=True)
class Match:
    """One blocked word: where it is in the original text and which listed form it hit."""

    text: str  # the original characters, as the user typed them
    term: str  # the blocked form it matched
    start: int
    end: int


def _fold_char(ch: str) -> str:
    """Lower-case ASCII-ish form of one character ("" for invisible ones)."""
    if ch in INVISIBLE:
        return ""
    decomposed = unicodedata.normalize("NFKD", ch)
    base = "".join(c for c in decomposed if not unicodedata.combining(c))
    return base.casefold().translate(LOOKALIKES)


def _fold(text: str) -> tuple[str, list[int]]:
    """The folded text, and for each of its characters the index of the original one."""
    out: list[str] = []
    where: list[int] = []
    for i, ch in enumerate(text):
        folded = ch.lower() if ch.isascii() else _fold_char(ch)
        for c in folded:
            out.append(c)
            where.append(i)
    return "".join(out), where


def _leet_variants(word: str) -> list[str]:
    if not any(c.isalpha() for c in word):
        return []  # "2024", "$5": numbers, not words in disguise
    options = [LEET.get(c, (c,)) for c in word]
    variants = []
    for combo in itertools.product(*options):
        variants.append("".join(combo))
        if len(variants) >= MAX_VARIANTS:
            break
    return variants


def _run_variants(word: str) -> Iterator[str]:
    """Stretched letters: each run of 2+ equal letters may stand for one or two of them."""
    runs = [(ch, len(list(group))) for ch, group in itertools.groupby(word)]
    if all(n == 1 for _, n in runs):
        yield word
        return
    choices = [(ch,) if n == 1 else (ch * 2, ch) for ch, n in runs]
    for count, combo in enumerate(itertools.product(*choices)):
        if count >= MAX_VARIANTS:
            return
        yield "".join(combo)


def _squeeze(word: str) -> str:
    """Every run of equal letters cut to one: "fuuuck" -> "fuck"."""
    return "".join(ch for ch, _ in itertools.groupby(word))


@lru_cache(maxsize=16384)
def _plain_forms(text: str) -> tuple[str, ...]:
    """Letters of ``text`` with the first leet reading, squeezed, also with "ph" as "f" and
    "v" as "u": what a prefix of a blocked word is compared with (cached: words repeat)."""
    letters = "".join(c for c in text if c.isalnum() or c in LEET)
    plain = "".join(LEET.get(c, (c,))[0] for c in letters)
    if not plain:
        return ()
    forms = (plain, plain.replace("ph", "f"), plain.replace("v", "u"))
    return tuple(dict.fromkeys(_squeeze(f) for f in forms))


class ProfanityFilter:
    """Finds blocked words in text. Thread-safe (immutable after construction).

    ``extra_words`` are matched as whole words (also split into pieces), never inside a
    longer token; ``allow`` lets words through; ``words`` replaces the built-in list.
    """

    def __init__(self, extra_words: Iterable[str] = (), allow: Iterable[str] = (),
                 words: Iterable[str] | None = None) -> None:
        base = BLOCKED_WORDS if words is None else frozenset(words)
        norm = {_fold(w.strip())[0] for w in extra_words if w.strip()}
        user_allow = {_fold(w.strip())[0] for w in allow if w.strip()}
        # The package's innocent names pass unless the user blocks one on purpose.
        self.allow = frozenset(user_allow | (innocent_names() - norm))
        self._user_allow = frozenset(user_allow)
        self.words = frozenset((set(base) | norm) - self.allow)
        # What a piece of a split word or the rest of a glued token may be without making
        # it suspicious: ordinary words and the allowed names.
        self.innocent = frozenset(common_words() | self.allow)
        self._vocabulary = frozenset(common_words() | self.words)  # "shitshitshit"
        self._before = frozenset(self._vocabulary | TEXT_SPEAK)
        glued = sorted((w for w in set(base) - self.allow if len(w) >= MIN_GLUED),
                       key=lambda w: (-len(w), w))
        self._glued_re = re.compile("|".join(map(re.escape, glued))) if glued else None
        self._glued_forms = tuple(glued)
        self._by_length: dict[int, list[str]] = {}
        for w in self.words:
            self._by_length.setdefault(len(w), []).append(w)
        self._longest = min(max(map(len, self.words), default=0), MAX_WORD)
        self._prefixes = frozenset(_squeeze(w)[:i] for w in self.words
                                   for i in range(1, len(w) + 1))

    # -- public ---------------------------------------------------------------------------
    def find(self, text: str) -> list[Match]:
        """Every blocked word in ``text``, in order, without overlaps."""
        folded, where = _fold(text)
        found: list[Match] = []
        taken_until = -1
        for start, end, candidate, pieces in self._candidates(folded):
            if start < taken_until:
                continue
            if pieces is None:
                term = self.term_of(candidate)
            else:
                term = self._term(candidate, glued=False)
                if pieces and term not in SPACED_COMPOUNDS \
                        and all(p in self.innocent for p in pieces):
                    continue  # "push it", "wet back": each piece is a word of its own
                if term is not None and self._is_initial(text, where, start, end, pieces):
                    continue  # "Mr S hit the ball", "T. Wat"
            if term is None:
                continue
            o_start, o_end = where[start], where[end - 1] + 1
            found.append(Match(text[o_start:o_end], term, o_start, o_end))
            taken_until = end
        return found

    def first(self, text: str) -> Match | None:
        matches = self.find(text)
        return matches[0] if matches else None

    def is_clean(self, text: str) -> bool:
        return not self.find(text)

    def term_of(self, word: str) -> str | None:
        """The blocked form a single (folded) word stands for, or None."""
        return self._term(word, glued=True)

    def could_continue(self, pieces: str) -> bool:
        """Whether ``pieces`` (folded text, e.g. "f u c", "sh") could be the start of a
        blocked word that more pieces complete: the stream guard holds such text back."""
        return any(p in self._prefixes for p in _plain_forms(pieces))

    # -- internals ------------------------------------------------------------------------
    def _is_initial(self, text: str, where: list[int], start: int, end: int,
                    pieces: tuple[str, ...]) -> bool:
        """Whether two joined pieces are an initial and a name or word: an upper-case letter,
        then a lower-case word ("S hit") or a capitalised one ("T. Wat"), not "S HIT"."""
        if len(pieces) != 2 or len(pieces[0]) != 1 or not text[where[start]].isupper():
            return False
        second = text[where[end - len(pieces[1])]:where[end - 1] + 1]
        return (second.islower() and pieces[1] in self.innocent) or second.istitle()


    @lru_cache(maxsize=16384)
    def _term(self, word: str, glued: bool) -> str | None:
        word = word.strip(_EDGE)
        if not word or len(word) > MAX_WORD or word in self.allow:
            return None
        if any(c in MASKS for c in word):
            return self._masked(word)
        for leet in _leet_variants(word):
            swaps = (leet, leet.replace("ph", "f"), leet.replace("v", "u"))
            for variant in dict.fromkeys(swaps):  # in order: results must not vary by run
                if variant in self.words:
                    return variant
                if variant in self.innocent:
                    continue  # a word or name as written: "Shiite" is not "shite" stretched
                term = self._variant_term(variant, glued)
                if term is not None:
                    return term
        return None

    def _variant_term(self, variant: str, glued: bool) -> str | None:
        runs = list(_run_variants(variant))
        for v in runs:
            if v in self._user_allow:  # the user's words, also stretched ("biiitch")
                return None  # (the package's names only as written: "shiiite" is "shite")
            if v in self.words:
                return v
            if glued:
                for root in EMBEDDED_ROOTS:
                    if root in v and root in self.words:
                        return root
        if glued and self._glued_re is not None:
            for v in runs:
                if v.isalpha() and self._glued_re.search(v):
                    term = self._glued(v)
                    if term is not None:
                        return term
        return None

    def _glued(self, token: str) -> str | None:
        """A blocked form stuck to words: the rest of the token, before and after it, must
        be made of ordinary words ("you"+"fucker", "fuck"+"off", "stupid"+"bitch"); what
        follows it may also be an ending ("cunt"+"ish")."""
        if token in self.innocent:
            return None
        for form in self._glued_forms:  # longest first: "bitches" before "bitch"
            at = token.find(form)
            while at != -1:
                before, after = token[:at], token[at + len(form):]
                if segments(before, self._before) and (
                        after in SUFFIXES or segments(after, self._vocabulary)):
                    return form
                at = token.find(form, at + 1)
        return None

    def _masked(self, word: str) -> str | None:
        """"f*ck", "sh#t": masks hide at most half the letters, and two letters must show.
        A mask between all the letters is a separator instead: "f*u*c*k"."""
        shown = sum(1 for c in word if c not in MASKS)
        if shown < 2 or shown < len(word) - shown:
            return None
        plain = "".join(LEET.get(c, (c,))[0] if c not in MASKS else c for c in word)
        pattern = re.compile("".join("." if c in MASKS else re.escape(c) for c in plain))
        # Prefer the plain roots ("f**k" is "fuck", not "fcuk"), then alphabetical order.
        for form in sorted(self._by_length.get(len(word), []),
                           key=lambda f: (f not in _PLAIN_ROOTS, f)):
            if pattern.fullmatch(form):
                return form
        unmasked = "".join(c for c in word if c not in MASKS)
        return self._term(unmasked, glued=False) if len(unmasked) >= 4 else None

    def _candidates(self, folded: str) -> Iterator[tuple[int, int, str, tuple[str, ...] | None]]:
        """(start, end, word, pieces) for every way a blocked word could be written, left to
        right: whole chunks and their parts (pieces None), the parts of a chunk joined
        ("ass-hole", "f.u.c.k": pieces ()) and runs of chunks joined ("f uck", "s h i t";
        pieces: their cores)."""
        chunks = [(m.start(), m.end(), m.group()) for m in _CHUNK.finditer(folded)]
        out: list[tuple[int, int, str, tuple[str, ...] | None]] = []
        for start, end, chunk in chunks:
            out.append((start, end, chunk, None))
            parts = [(start + m.start(), start + m.end(), m.group())
                     for m in _PARTS.finditer(chunk)]
            if len(parts) > 1:
                # Pieces () : joined inside one chunk, where the separator says they belong
                # together ("ass-hole"), so ordinary words are joined too.
                out.append((parts[0][0], parts[-1][1], _JOIN_SEPARATORS.sub("", chunk), ()))
                out.extend((s, e, p, None) for s, e, p in parts)
        out.extend(self._joins(chunks))
        # Sort by start, longest first, so that a whole match wins over its parts.
        out.sort(key=lambda c: (c[0], -(c[1] - c[0])))
        yield from out

    def _joins(self, chunks: list[tuple[int, int, str]]
               ) -> Iterator[tuple[int, int, str, tuple[str, ...]]]:
        """Runs of 2+ neighbouring chunks joined, where only a space (and . - _ ~ *) stands
        between them, as long as the joined text could still be a listed word."""
        cores = []
        for start, end, chunk in chunks:
            core = chunk.strip(_EDGE)
            lead = chunk[:len(chunk) - len(chunk.lstrip(_EDGE))]
            trail = chunk[len(chunk.rstrip(_EDGE)):]
            cores.append((start + len(lead), end - len(trail), _SEPARATORS.sub("", core),
                          set(lead) <= _JOINERS, set(trail) <= _JOINERS))
        for i, (start, _, first, _, open_after) in enumerate(cores):
            if not first or not open_after or not self.could_continue(first):
                continue
            text, pieces = first, [first]
            for _, end, core, open_before, open_after_j in cores[i + 1:i + MAX_PIECES]:
                if not core and open_before:
                    continue  # a lone "-" or "." between pieces: "f - uck"
                if not core or not open_before or len(text) + len(core) > self._longest + 4:
                    break
                text += core
                if not self.could_continue(text):
                    break  # no listed word starts like this: longer runs cannot help
                pieces.append(core)
                yield start, end, text, tuple(pieces)
                if not open_after_j:
                    break


@lru_cache(maxsize=1)
def default_filter() -> ProfanityFilter:
    return ProfanityFilter()
