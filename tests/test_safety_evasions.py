"""Words split into pieces or glued to others, and what must not be caught while doing so:
innocent names and words (the package's allow-list and more), phrases whose words happen to
join into a blocked one, and real text (Shakespeare, WikiText-2) where ../shared has it."""

from __future__ import annotations

import collections
import random
import string
import time
from pathlib import Path

import pytest

from pocketlm.safety import (BLOCKED_WORDS, ProfanityFilter, StreamGuard, common_words,
                             default_filter, innocent_names)

F = default_filter()
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

EVASIONS = [
    # the field report's sample, and the same word split every way
    ("He told them to f uck off", "fuck"), ("f uck", "fuck"), ("fu ck", "fuck"),
    ("fuc k", "fuck"), ("f uc k", "fuck"), ("F U C K", "fuck"), ("f. u. c. k.", "fuck"),
    ("f- uck", "fuck"), ("f\u200buck", "fuck"), ("f\u200bu\u200bc\u200bk", "fuck"),
    ("(f uck)", "fuck"), ("what the f uck is this", "fuck"), ("f uuuck", "fuck"),
    ("ph uck", "fuck"), ("f*u*c*k", "fuck"),
    # one piece is a word, the other is not
    ("sh it", "shit"), ("sh it!", "shit"), ("s hit", "shit"), ("S HIT", "shit"), ("shi t", "shit"),
    ("sh 1t", "shit"), ("5h it", "shit"), ("sh.it", "shit"), ("sh_it", "shit"),
    ("sh\u200bit", "shit"), ("sh it's cold", "shits"), ("bit ch", "bitch"), ("bi tch", "bitch"),
    ("b i t c h", "bitch"), ("c unt", "cunt"), ("cu nt", "cunt"), ("tw at", "twat"),
    ("wan ker", "wanker"), ("wh ore", "whore"), ("who re", "whore"), ("sl ut", "slut"),
    ("a sshole", "asshole"), ("as shole", "asshole"), ("nigg er", "nigger"), ("ni gga", "nigga"),
    ("pus sy", "pussy"), ("dil do", "dildo"), ("S.H.I.T", "shit"),
    # compounds whose spaced form is no ordinary phrase
    ("ass hole", "asshole"), ("you ass holes", "assholes"), ("dick head", "dickhead"),
    ("cock sucker", "cocksucker"),
    # glued to ordinary words
    ("fuckoff", "fuck"), ("FUCKOFF", "fuck"), ("youfucker", "fuck"), ("gofuckyourself", "fuck"),
    ("bullshitter", "bullshitter"), ("shithouse", "shit"), ("holyshit", "shit"),
    ("shitshow", "shits"), ("shitbags", "shitbag"), ("stupidbitch", "bitch"),
    ("bitchass", "bitch"), ("bitchesbrew", "bitches"), ("cuntface", "cunt"),
    ("whatacunt", "cunt"), ("slutbag", "slut"), ("twatface", "twat"), ("wankstain", "wank"),
    ("dumbbitch", "bitch"), ("dipshits", "dipshit"), ("whorehouse", "whore"),
    ("sh1thead", "shithead"), ("fuuuckoff", "fuck"), ("shiiitface", "shitface"),
    ("niggerlover", "nigger"), ("bigwhore", "whore"), ("Bitchface", "bitch"),
    # glued to an ending or to text-speak
    ("cuntish", "cunt"), ("niggerish", "nigger"), ("gookery", "gook"), ("assholeish", "asshole"),
    ("ubitch", "bitch"), ("urabitch", "bitch"), ("wankered", "wanker"),
    # an allowed name stretched is no longer the name
    ("shiiite", "shite"), ("twaaatt", "twat"),
]

INNOCENT = [
    # a blocked word inside: places
    "Scunthorpe", "Penistone", "Essex", "Sussex", "Middlesex", "Clitheroe", "Lightwater",
    "Bridgwater", "Cumbria", "Cockermouth", "Titicaca", "Lake Titicaca", "Arsenal", "Shittim",
    "Shitterton", "Shitlington", "Bitchfield", "Bitche", "Slutsk", "Cuntis", "Wankie",
    "Wankdorf", "Witwatersrand", "Fukuoka", "Fukushima", "Phuket", "Washita", "Assam",
    "Cockfosters", "Pershore", "Saskatchewan", "Wanaka", "Twatling Road", "Bitchet Green",
    "Shittlehope", "Shih Tzu", "Shitsu", "a washitsu room",
    # surnames and people
    "Cockburn", "Dickens", "Hancock", "Hitchcock", "Horniman", "Matsushita", "Sexton",
    "Dikshit", "Shittu", "Shitole", "Gookin", "Wankhede", "Sluter", "Kuntz", "Fuchs", "Hitchens",
    # food, nature, science
    "shiitake", "Shitake", "shittah", "cocktail", "cucumber", "cumin", "kumquat", "titmouse",
    "bushtit", "assay", "arsenic", "cumulonimbus", "sextant", "Fuchsia", "pussycat",
    "pussyfooting", "saltwater", "meltwater", "wristwatch", "smartwatches",
    # words
    "assassin", "class", "bass", "grass", "grasshopper", "therapist", "analysis", "document",
    "pass", "passage", "assume", "snigger", "niggardly", "swanky", "Wankel", "sluttish",
    "gobbledygook", "mishit", "shuttlecock",
    # stretched-letter look-alikes: a doubled letter that is the name's own spelling
    "Shiite", "Shiites", "the Shiite clerics", "Twatt", "Twatt, Orkney",
    # phrases whose words join into a blocked word: each word stands on its own
    "push it", "Wash it", "fish it", "lash it", "a ss", "a b c d", "I a m", "wet back",
    "his wet back ached", "factory hand jobs", "Balaam's dumb asses", "the rapist",
    "tit ties", "fu nny", "co unt", "sh ifting", "sh ut", "bit cheap", "Sc unthorpe",
    "pen island", "who 're", "they 're here", "who're you", "Who're they?", "the sh, it",
    "U.S. hit", "who re-elected", "as she said", "a glass hole", "Mr S hit the ball",
    "J. Hit and T. Wat",
]


@pytest.mark.parametrize("text, term", EVASIONS)
def test_evasion_is_blocked(text, term):
    m = F.first(text)
    assert m is not None, f"{text!r} was not blocked"
    assert m.term == term
    assert text[m.start:m.end] == m.text and m.text.strip()


@pytest.mark.parametrize("text", INNOCENT)
def test_innocent_text_passes(text):
    assert F.find(text) == [], f"{text!r} was blocked"


def test_every_allowed_name_passes_alone_and_in_a_sentence():
    names = sorted(innocent_names())
    assert len(names) >= 80
    for name in names:
        for form in (name, name.upper(), name.capitalize()):
            assert F.find(form) == [], form
            assert F.find(f"We drove to {form}, then home.") == [], form
        assert name not in BLOCKED_WORDS


def test_the_word_lists_are_consistent():
    words = common_words()
    assert 10_000 < len(words) < 30_000
    assert not [w for w in words if any(b in w for b in BLOCKED_WORDS)]  # see the script
    assert {"off", "you", "head", "it", "a"} <= words and "sh" not in words


def test_glued_needs_words_on_both_sides():
    assert F.first("fuckoff") and F.first("youfuckingidiot")
    assert F.first("shitoff").term == "shit"
    # the rest of the token is no word: an innocent name, not an insult stuck to a word
    for token in ("Scunthorpe", "Matsushita", "Lightwater", "Shitakeru", "Wankdorfer"):
        assert F.first(token) is None, token
    # a name that happens to split into words is passed by the allow-list, and the
    # filter's allow= does the same for a user's own names
    assert F.first("Bitchfield") is None
    custom = ProfanityFilter(allow=["Cuntsfield"])
    assert custom.first("Cuntsfield") is None and F.first("Cuntsfield") is not None


def test_extra_words_are_not_found_glued():
    custom = ProfanityFilter(extra_words=["grommet"])
    assert custom.first("the grommet").term == "grommet"
    assert custom.first("gr ommet").term == "grommet"  # split: found
    assert custom.first("bluegrommet") is None  # glued: a user's word stays a whole word


def test_split_words_stay_within_a_phrase():
    # a comma, an apostrophe or brackets end a word: only . - _ ~ * may stand between pieces
    for text in ("sh, it", "sh; it", "f (uck)", "who 're", "sh' it"):
        assert F.first(text) is None, text
    for text in ("sh\nit", "sh\tit", "f  uck", "f - uck", "f ~ uck"):  # white space is white space
        assert F.first(text) is not None, text


def test_a_users_words_win_over_the_package_lists():
    assert ProfanityFilter(extra_words=["Essex"]).first("Essex").term == "essex"
    assert ProfanityFilter(allow=["fuckoff"]).first("fuckoff") is None


# -- real text ---------------------------------------------------------------------------------
# What these corpora hold that the list blocks on purpose (counts are per file version):
# Shakespeare's "whore", "whores", "whoreson" and "whoremaster", a "dildos", and WikiText-2's
# quoted "shit" and "fucking". Anything else flagged would be a false positive.
TRUE_HITS = {"whore", "whores", "whoreson", "whoremaster", "dildos", "shit", "fucking"}


def flagged_words(path: Path) -> collections.Counter:
    found: collections.Counter = collections.Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        for m in F.find(line):
            found[m.text.strip(".,;:!?'\"").lower()] += 1
    return found


@pytest.mark.parametrize("name", ["tinyshakespeare.txt", "wikitext-2/valid.txt"])
def test_no_false_positives_in_real_text(name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"needs {path} (the project's shared data, beside the repository)")
    found = flagged_words(path)
    assert found and set(found) <= TRUE_HITS, sorted(set(found) - TRUE_HITS)


# -- speed ---------------------------------------------------------------------------------
def test_checking_one_streamed_word_is_fast():
    """The app checks every streamed word: a fresh filter (empty caches) on new words."""
    flt = ProfanityFilter()
    rng = random.Random(0)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 12)))
             for _ in range(2000)]
    t0 = time.perf_counter()
    for i, w in enumerate(words):
        flt.find(f"{words[i - 1]} {w}")
    per_call = (time.perf_counter() - t0) / len(words)
    assert per_call < 2e-3, f"{per_call * 1e6:.0f} us per call"


# -- the stream guard with split and glued words ----------------------------------------------
@pytest.mark.parametrize("pieces", [
    ["The", " sailor", " said", " f", " uck", " off"],
    ["The", " sailor", " said", " sh", " it", " loudly"],
    ["The", " sailor", " said", " as", " shole", " again"],
    ["The", " sailor", " said", " fuck", "off", " and", " left"],
    ["The", " sailor", " said", " you", "fucker", " and", " left"],
    ["The", " sailor", " said", " bit", " ch", " and", " left"],
])
def test_guard_blocks_split_and_glued_words_before_any_piece_is_shown(pieces):
    g = StreamGuard(F)
    shown = "".join(g.push(p) for p in pieces) + g.finish()
    assert g.match is not None
    assert shown == "The sailor said "


def test_guard_releases_phrases_whose_words_join():
    g = StreamGuard(F)
    pieces = ["Push", " it", " and", " wash", " it", " as", " she", " said"]
    shown = "".join(g.push(p) for p in pieces)
    assert g.match is None and shown == "Push it and wash it as she "
    assert g.finish() == "said"


def test_guard_on_a_long_suggestion_is_linear_and_still_catches_a_split_word():
    words = ("It was the best of times, it was the worst of times, it was the age of "
             "wisdom, it was the age of foolishness.").split()
    pieces = [" " + words[i % len(words)] for i in range(600)] + [" sh", " it", " then"]
    g = StreamGuard(F)
    t0 = time.perf_counter()
    shown = "".join(g.push(p) for p in pieces) + g.finish()
    per_piece = (time.perf_counter() - t0) / len(pieces)
    assert g.match is not None and g.match.term == "shit"
    assert shown == "".join(pieces[:600]) + " "
    assert per_piece < 5e-3, f"{per_piece * 1e3:.1f} ms per piece"
