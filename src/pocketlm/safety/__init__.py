"""A small, offline profanity filter for prompts and suggestions (no Keras, no TensorFlow).

Why not a library: the PyPI options were checked. ``better-profanity`` (last release 2020)
blocks "hell", "kill", "god", "gay", "drunk" and "weed", which a story autocomplete meets
all the time; ``alt-profanity-check`` needs scikit-learn and a trained model. So this is a
curated list with careful matching:

* **whole words**: a word is compared with the list as a whole, so "Scunthorpe", "class",
  "assistant", "cocktail", "Sussex" and "therapist" pass. The root "fuck" is also found
  inside any longer word, since no innocent English word contains it.
* **glued words**: another listed form (4+ letters) inside a longer token counts only when
  the rest of the token, before and after it, is made of common English words
  (``words.txt``; after it also an ending, "-ish"; before it text-speak, "u"): "fuckoff",
  "youfucker", "stupidbitch", "shitbags", "cuntish" are caught, while
  "Scunthorpe" ("s" + "cunt" + "horpe"), "Matsushita", "Lightwater" pass. A token that is
  itself a common word, or on the allow-list (``allow.txt``: "pussycat", "Bitchfield",
  "Cuntis"), passes.
* **split words**: neighbouring chunks are joined when only spaces (or ``. - _ ~ *``) stand
  between them and the joined text is a listed word: "f uck", "sh it", "f u c k",
  "f. u. c. k", "a sshole". Not when every piece is an ordinary word: a phrase is judged by
  its words, so "push it", "as shit" (caught as "shit"), "ass hole" and "wet back" are not
  joined; nor across a comma or an apostrophe ("who 're"), nor an initial and a word ("Mr S
  hit the ball"). Inside one chunk the separator
  joins: "f.u.c.k", "f-u-c-k", "ass-hole".
* **normalisation**: case, accents and full-width letters (NFKD), a few Cyrillic look-alikes,
  invisible characters (zero-width space, soft hyphen), leetspeak (``sh1t``, ``$hit``,
  ``a$$hole``), ``ph``/``v`` for ``f``/``u`` (``phuck``, ``fvck``), stretched letters
  (``fuuuuck``, ``shiiit``) and masks (``f*ck``, ``sh*t``, ``f*u*c*k``). A word that is
  spelled as a common word or an allowed name is not "un-stretched": "Shiite" is not
  "shite", "Twatt" (Orkney) is not "twat".
* **mild words pass**: damn, hell, crap, bastard, bloody, ass (the animal), cock (the bird),
  dick (the name), piss, prick and tit appear in ordinary text and in Shakespeare; the list
  holds strong obscenities and slurs only.

:class:`StreamGuard` applies the filter to text that arrives a token at a time: it releases
only complete words that passed, so a bad word is caught before the user sees it.
"""

from __future__ import annotations

from .filter import LEET, Match, ProfanityFilter, default_filter
from .lexicon import BLOCKED_WORDS, EMBEDDED_ROOTS, common_words, innocent_names
from .stream import StreamGuard

__all__ = ["BLOCKED_WORDS", "EMBEDDED_ROOTS", "LEET", "Match", "ProfanityFilter", "StreamGuard",
           "common_words", "default_filter", "innocent_names"]
