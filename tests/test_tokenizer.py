"""The GPT-2 tokenizer under its old names (pocketlm.tokenizer): exact against KerasHub's, and
UTF-8 safe when streaming."""

from __future__ import annotations

import numpy as np
import pytest

from pocketlm.tokenizer import BPETokenizer

from .conftest import needs_convert

TEXTS = [
    "I'm enjoying a quiet evening.",
    "Hello,   world!\n\nNew paragraph\twith tab",
    "ROMEO: What say'st thou? 12345 and 3.14159",
    "Emoji 🤖🎉 and CJK 漢字 and Persian سلام دنیا and Arabic مرحبا",
    "  leading and trailing spaces  ",
    "don't won't they're we've I'll he'd",
]


@pytest.fixture(scope="module")
def tok() -> BPETokenizer:
    return BPETokenizer.gpt2()


def test_known_ids(tok):
    # GPT-2's ids for this prompt, as published by its tokenizer.
    assert tok.encode("I'm enjoying a") == [40, 1101, 13226, 257]
    assert tok.vocabulary_size == 50257 and tok.end_token_id == 50256


@pytest.mark.parametrize("text", TEXTS)
def test_roundtrip(tok, text):
    assert tok.decode(tok.encode(text)) == text


# Where KerasHub's TF-regex tokenizer departs from OpenAI's reference GPT-2 encoder (it has
# no look-ahead): pocketlm follows the reference. These texts avoid those two cases.
SAME_AS_KERAS = [TEXTS[0], TEXTS[3], TEXTS[5], "Hello, world! New paragraph with tab",
                 "ROMEO: What say thou? 12345 and 3.14159"]


def test_reference_gpt2_edge_cases(tok):
    # "\n\n" before a word is two "\n" tokens, and "'s" is a contraction even in "'st".
    assert tok.encode("!\n\nNew") == [0, 198, 198, 3791]
    assert tok.encode(" say'st") == [910, 338, 83]


@needs_convert
@pytest.mark.parametrize("text", SAME_AS_KERAS)
def test_matches_keras_hub(tok, text):
    from pocketlm.authoring import gpt2_keras_tokenizer

    keras_ids = [int(i) for i in np.asarray(gpt2_keras_tokenizer()(text))]
    assert tok.encode(text) == keras_ids


def test_serialisation_roundtrip(tok):
    again = BPETokenizer.from_bytes(tok.to_bytes())
    assert again.encode(TEXTS[3]) == tok.encode(TEXTS[3])
    assert again.end_token_id == tok.end_token_id


def test_streaming_never_splits_a_character(tok):
    text = "🤖 漢字 سلام 😀😀 é"
    ids = tok.encode(text)
    streamer = tok.streamer()
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    assert "".join(pieces) == text
    for piece in pieces:
        assert "\ufffd" not in piece
        piece.encode("utf-8")  # each piece is whole characters
    # Some emoji tokens are partial bytes: at least one push must have returned "".
    assert any(p == "" for p in pieces[:-1])
