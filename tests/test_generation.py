"""Prompt preparation: context window in words or tokens, fitting the cache, bad prompts."""

from __future__ import annotations

import pytest

from pocketlm.config import GenerationConfig
from pocketlm.errors import PromptError
from pocketlm.runtime.generation import last_words, prepare_prompt
from pocketlm.tokenizer import BPETokenizer


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.gpt2()


def test_last_words_keeps_spacing_and_punctuation():
    text = "One, two  three;\tfour...  five!\n six"
    assert last_words(text, 3) == "four...  five!\n six"
    assert last_words(text, 1) == "six"
    assert last_words("  just two ", 5) == "just two "


def test_context_window_in_words(tok):
    cfg = GenerationConfig(context_window=2, context_unit="words")
    p = prepare_prompt(tok, "a b c d  e", cfg, 256)
    assert p.text == "d  e" and not p.truncated


def test_context_window_in_tokens(tok):
    cfg = GenerationConfig(context_window=3)
    p = prepare_prompt(tok, "I'm enjoying a", cfg, 256)
    assert p.ids == [1101, 13226, 257]


def test_long_prompt_is_cut_to_leave_room(tok):
    cfg = GenerationConfig(max_new_tokens=20)
    p = prepare_prompt(tok, "word " * 500, cfg, 64)
    assert p.truncated and len(p.ids) == 44


@pytest.mark.parametrize("bad", ["", "   \n\t", b"\xff\xfeabc"])
def test_bad_prompts_have_clear_errors(tok, bad):
    with pytest.raises(PromptError, match="empty|UTF-8"):
        prepare_prompt(tok, bad, GenerationConfig(), 64)
