"""A small, offline profanity filter for prompts and suggestions (no Keras, no TensorFlow).

Why not a library: the PyPI options were checked. ``better-profanity`` (last release 2020)
blocks "hell", "kill", "god", "gay", "drunk" and "weed", which a story autocomplete meets
all the time; ``alt-profanity-check`` needs scikit-learn and a trained model. So this is a
curated list with careful matching:

* **whole words only**: a word is compared with the list as a whole, so "Scunthorpe",
  "class", "assistant", "cocktail", "Sussex" and "therapist" pass. Only the root "fuck" is
  also found inside longer words, since no innocent English word contains it.
* **normalisation**: case, accents and full-width letters (NFKD), a few Cyrillic look-alikes,
  invisible characters (zero-width space, soft hyphen), leetspeak (``sh1t``, ``$hit``,
  ``a$$hole``), ``ph``/``v`` for ``f``/``u`` (``phuck``, ``fvck``), stretched letters
  (``fuuuuck``, ``shiiit``), masks (``f*ck``, ``sh*t``) and spelled-out words (``f.u.c.k``,
  ``f u c k``, ``f-u-c-k``).
* **mild words pass**: damn, hell, crap, bastard, bloody, ass (the animal), cock (the bird),
  dick (the name), piss, prick and tit appear in ordinary text and in Shakespeare; the list
  holds strong obscenities and slurs only.

:class:`StreamGuard` applies the filter to text that arrives a token at a time: it releases
only complete words that passed, so a bad word is caught before the user sees it.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Iterator

# Every form is lower-case ASCII; inflections are listed rather than guessed so that a
# suffix rule cannot sweep in an innocent word.
BLOCKED_WORDS: frozenset[str] = frozenset("""
fuck fucks fucked fucker fuckers fucking fuckin fuckings fuckface fuckhead fuckwit fucktard
fuckup motherfucker motherfuckers motherfucking fuk fuks fuked fuker fukker fuking fukin fck
fcks fcked fcker fcking fckin fcuk fcuking phuk phuking
shit shits shitty shittier shittiest shitted shitting shite shithead shitheads shitface
shitfaced shithole shitholes shitload shitstorm shitbag bullshit bullshitter bullshitting
horseshit dipshit apeshit batshit chickenshit
cunt cunts cunty
asshole assholes arsehole arseholes asshat asshats asswipe dumbass dumbasses
cocksucker cocksuckers cocksucking dickhead dickheads dickwad dickface
bitch bitches bitchy bitching bitched biatch sonofabitch
whore whores whoring slut sluts slutty twat twats wank wanks wanked wanker wankers wanking
pussy pussies dildo dildos jizz cumshot cumshots blowjob blowjobs handjob handjobs titties
nigger niggers nigga niggas faggot faggots kike kikes tranny trannies wetback wetbacks
gook gooks
""".split())

# Roots also blocked inside a longer word ("motherfuckingidiot"): only roots that no
# ordinary word contains. "cunt" is not one of them (Scunthorpe), nor "shit" (Shittim).
EMBEDDED_ROOTS: tuple[str, ...] = ("fuck",)

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
_PARTS = re.compile(f"[^{_SEP_CHARS}]+")
_EDGE = ".,;:!?\"'`()[]{}<>~-_"
_CHUNK = re.compile(r"\S+")
MAX_VARIANTS = 64
MAX_WORD = 40  # longer "words" are noise (URLs, hashes): not worth the variants


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
        if ch.isascii():
            folded = ch.lower()
        else:
            folded = _fold_char(ch)
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


class ProfanityFilter:
    """Finds blocked words in text. Thread-safe (immutable after construction)."""

    def __init__(self, extra_words: Iterable[str] = (), allow: Iterable[str] = (),
                 words: Iterable[str] | None = None) -> None:
        base = BLOCKED_WORDS if words is None else frozenset(words)
        norm = {_fold(w.strip())[0] for w in extra_words if w.strip()}
        self.allow = frozenset(_fold(w.strip())[0] for w in allow if w.strip())
        self.words = frozenset((set(base) | norm) - self.allow)
        self._by_length: dict[int, list[str]] = {}
        for w in self.words:
            self._by_length.setdefault(len(w), []).append(w)

    # -- public ---------------------------------------------------------------------------
    def find(self, text: str) -> list[Match]:
        """Every blocked word in ``text``, in order, without overlaps."""
        folded, where = _fold(text)
        found: list[Match] = []
        taken_until = -1
        for start, end, candidate in self._candidates(folded):
            if start < taken_until:
                continue
            term = self.term_of(candidate)
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

    @lru_cache(maxsize=4096)
    def term_of(self, word: str) -> str | None:
        """The blocked form a single (folded) word stands for, or None."""
        word = word.strip(_EDGE)
        if not word or len(word) > MAX_WORD or word in self.allow:
            return None
        if any(c in MASKS for c in word):
            return self._masked(word)
        for leet in _leet_variants(word):
            swaps = (leet, leet.replace("ph", "f"), leet.replace("v", "u"))
            for variant in dict.fromkeys(swaps):  # in order: results must not vary by run
                for v in _run_variants(variant):
                    if v in self.allow:
                        return None
                    if v in self.words:
                        return v
                    for root in EMBEDDED_ROOTS:
                        if root in v and root in self.words:
                            return root
        return None

    # -- internals ------------------------------------------------------------------------
    def _masked(self, word: str) -> str | None:
        """"f*ck", "sh#t": masks hide at most half the letters, and two letters must show."""
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
        return None

    @staticmethod
    def _candidates(folded: str) -> Iterator[tuple[int, int, str]]:
        """(start, end, word) for every way a blocked word could be written, left to right:
        whole chunks, their parts, the parts glued together ("ass-hole"), and runs of single
        letters, within a chunk ("f.u.c.k") or across chunks ("f u c k")."""
        chunks = [(m.start(), m.end(), m.group()) for m in _CHUNK.finditer(folded)]
        singles: list[tuple[int, int, str]] = []  # current run of one-letter chunks
        out: list[tuple[int, int, str]] = []

        def flush_singles() -> None:
            if len(singles) >= 3:
                out.append((singles[0][0], singles[-1][1], "".join(s[2] for s in singles)))
            singles.clear()

        for start, end, chunk in chunks:
            core = chunk.strip(_EDGE)
            if len(core) == 1:
                singles.append((start, end, core))
            else:
                flush_singles()
            out.append((start, end, chunk))
            parts = [(start + m.start(), start + m.end(), m.group())
                     for m in _PARTS.finditer(chunk)]
            if len(parts) > 1:
                out.append((parts[0][0], parts[-1][1], _SEPARATORS.sub("", chunk)))
                out.extend(parts)
                run: list[tuple[int, int, str]] = []
                for part in parts + [(0, 0, "")]:
                    if len(part[2]) == 1:
                        run.append(part)
                        continue
                    if len(run) >= 3:
                        out.append((run[0][0], run[-1][1], "".join(p[2] for p in run)))
                    run = []
        flush_singles()
        # Sort by start, longest first, so that a whole match wins over its parts.
        out.sort(key=lambda c: (c[0], -(c[1] - c[0])))
        yield from out


@lru_cache(maxsize=1)
def default_filter() -> ProfanityFilter:
    return ProfanityFilter()


class StreamGuard:
    """Checks a suggestion as it streams in; releases only text that passed.

    ``prefix`` is the end of the prompt, so that a suggestion that finishes the prompt's
    last word ("fu" + "ck") is caught; matches that lie wholly inside it are not reported.
    Complete words are released once checked; the last, still growing word and a trailing
    run of single letters (maybe spelling a word out) are held back until more arrives.
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
        chunks = list(_CHUNK.finditer(self.text, 0, end))
        # Step back over trailing one-letter words: "f u c" may become "f u c k".
        while chunks and len(chunks[-1].group().strip(_EDGE)) <= 1:
            end = chunks.pop().start()
        return end

    def _release(self, end: int, final: bool = False) -> str:
        if end <= self.released or (not final and not self.text[self.released:end].strip()):
            return ""  # nothing new, or only spaces: they go out with the next word
        whole = self.prefix + self.text[:end]
        for m in self.filter.find(whole):
            if m.end > len(self.prefix):
                shift = len(self.prefix)
                self.match = Match(m.text, m.term, max(m.start - shift, 0), m.end - shift)
                return ""
        out = self.text[self.released:end]
        self.released = end
        return out
