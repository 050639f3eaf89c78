"""What the filter knows: the blocked words, the innocent words and names that must pass
(``allow.txt``), and the common English words (``words.txt``) that a glued token is split
into ("fuckoff" is "fuck" + "off"; "Scunthorpe" is not "s" + "cunt" + "horpe")."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

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

# Listed compounds that are blocked even when written as two ordinary words ("ass hole",
# "dick head"): the spaced form is no ordinary phrase. Other listed words are not joined
# from ordinary words: "wet back", "hand jobs", "dumb asses" (Balaam's) are innocent.
SPACED_COMPOUNDS: frozenset[str] = frozenset("""
asshole assholes arsehole arseholes asshat asshats asswipe dickhead dickheads dickwad
dickface cocksucker cocksuckers cocksucking
""".split())

# Roots also blocked inside any longer word ("motherfuckingidiot"): only roots that no
# ordinary word contains. Other forms are found inside a longer token only when the rest of
# it is made of words (see ProfanityFilter): "cunt" is in "Scunthorpe", "shit" in "Shittim".
EMBEDDED_ROOTS: tuple[str, ...] = ("fuck",)

# Endings that make a new word of a listed one ("cuntish", "niggerish", "gookery") and may
# follow it in a glued token where the rest would not be a word.
SUFFIXES: frozenset[str] = frozenset("""
s es ed er ers ery ing ings ish y ier iest ies ness less ful fest
""".split())

# Text-speak that may stand before a glued form ("ubitch", "urabitch"); not after it, where
# "u" ends innocent names ("Shitsu", "Shittu").
TEXT_SPEAK: frozenset[str] = frozenset({"u", "ur", "ya"})

# Shorter forms are too easily found by chance inside a token made of short words.
MIN_GLUED = 4
# The longest word a glued token is split into (longer ones are not in words.txt anyway).
MAX_SEGMENT = 24


def _read(name: str) -> frozenset[str]:
    """One entry a line, lower-cased; ``#`` starts a comment."""
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    entries = (line.split("#", 1)[0].strip().casefold() for line in text.splitlines())
    return frozenset(e for e in entries if e)


@lru_cache(maxsize=1)
def common_words() -> frozenset[str]:
    """About 16,600 common English words (no names, none containing a blocked form)."""
    return _read("words.txt")


@lru_cache(maxsize=1)
def innocent_names() -> frozenset[str]:
    """Words and names that contain, or normalise to, a blocked form but must pass."""
    return _read("allow.txt")


def segments(text: str, vocabulary: frozenset[str]) -> bool:
    """Whether ``text`` is a run of words of ``vocabulary`` ("" is: nothing is left over).

    Dynamic programming over the end positions: O(len(text) * MAX_SEGMENT) set look-ups.
    """
    n = len(text)
    reach = [True] + [False] * n
    for end in range(1, n + 1):
        for start in range(max(0, end - MAX_SEGMENT), end):
            if reach[start] and text[start:end] in vocabulary:
                reach[end] = True
                break
    return reach[n]
