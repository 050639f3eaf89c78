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


@pytest.mark.parametrize("bad", ["", "   \n\t", b"\xff\xfeabc", None, 42])
def test_bad_prompts_have_clear_errors(tok, bad):
    with pytest.raises(PromptError, match="empty|UTF-8|must be text"):
        prepare_prompt(tok, bad, GenerationConfig(), 64)


# -- the work before the window cut is bounded by the window -----------------------------
class CountingTokenizer:
    """A tokenizer that counts the characters it is asked to encode (and is deliberately
    slow: a quadratic cost per call), wrapping the real GPT-2 one."""

    def __init__(self, real: BPETokenizer) -> None:
        self.real = real
        self.token_bytes = real.token_bytes
        self.chars = 0

    def encode(self, text: str) -> list[int]:
        self.chars += len(text)
        sum(1 for _ in range(len(text) * len(text) // 20_000))  # quadratic, like BPE on a word
        return self.real.encode(text)

    def decode(self, ids):
        return self.real.decode(ids)

    def starts_inside_character(self, token: int) -> bool:
        return self.real.starts_inside_character(token)


LONGEST = 128  # bytes in GPT-2's longest token


@pytest.mark.parametrize("prompt", [
    "Floccinaucinihilipilification" * 2200,  # the issue's sample: 63 KB of one long word
    "x" * 63_000,
    "🌍" * 30_000,
    "All the world's a stage, and all the men and women merely players. " * 2000,
    "a" + " " * 200_000 + "end",
])
@pytest.mark.parametrize("window", [None, 3, 40])
def test_work_before_the_cut_is_bounded_by_the_window(tok, prompt, window):
    counting = CountingTokenizer(tok)
    cfg = GenerationConfig(max_new_tokens=5, context_window=window)
    p = prepare_prompt(counting, prompt, cfg, 256)
    kept = min(window or 251, 251)
    assert 0 < len(p.ids) <= kept
    # At most twice the safe bound (kept tokens x the longest token, plus margins).
    assert counting.chars <= 2 * (kept * LONGEST + LONGEST + 64)
    assert counting.chars < len(prompt) / 8  # in practice: a few characters per kept token
    assert prompt.endswith(p.text) and "\ufffd" not in p.text


def test_ordinary_text_reads_only_a_few_characters_per_token(tok):
    text = open(__file__, encoding="utf-8").read() * 50
    counting = CountingTokenizer(tok)
    p = prepare_prompt(counting, text, GenerationConfig(max_new_tokens=6), 256)
    assert counting.chars <= 250 * 16
    # The cut falls between words: the kept tokens are those of the whole text.
    assert p.ids == tok.encode(text)[-250:] and p.truncated and not p.windowed


@pytest.mark.parametrize("n", [1, 2, 7, 50, 300])
def test_last_tokens_equal_the_end_of_the_whole_tokenization(tok, n):
    from pocketlm.runtime.generation import last_tokens

    text = "It was the best of times, it was the worst of times; 1234 — ünïcödé. " * 40
    full = tok.encode(text)
    ids, dropped = last_tokens(tok, text, n)
    assert ids == full[-n:] and dropped == (len(full) > n)


def test_last_words_reads_only_the_end():
    text = "word " * 2_000_000 + "the very end"
    assert last_words(text, 3) == "the very end"  # would take seconds if it scanned it all


# -- every cut starts on a whole character ----------------------------------------------
def _starts_whole(tok, ids) -> bool:
    first = tok.token_bytes[ids[0]][:1]
    return not first or (first[0] & 0xC0) != 0x80


@pytest.mark.parametrize("prompt", ["Fine weather 🌍🌍 today", "🤖🎉👋🏽 and 漢字 and عربي",
                                    "日本語のテキストです" * 30, "🌍" * 200])
def test_every_cut_starts_on_a_whole_character(tok, prompt):
    results = []
    for n in range(1, 12):
        for cfg, length in ((GenerationConfig(context_window=n, max_new_tokens=3), 256),
                            (GenerationConfig(max_new_tokens=3), 2 * n + 4)):
            try:
                p = prepare_prompt(tok, prompt, cfg, length)
            except PromptError as exc:  # a window smaller than the last character
                assert "holds no whole character" in str(exc)
                continue
            assert _starts_whole(tok, p.ids) and "\ufffd" not in p.text
            assert prompt.endswith(p.text)
            assert p.windowed or p.truncated or p.text == prompt
            results.append(p)
    assert results


def test_the_issue_sample_cut(tok):
    p = prepare_prompt(tok, "Fine weather 🌍🌍 today",
                       GenerationConfig(context_window=3, max_new_tokens=3), 256)
    assert p.text == " today" and p.windowed and not p.truncated
    with pytest.raises(PromptError, match="holds no whole character"):
        prepare_prompt(tok, "🌍", GenerationConfig(context_window=1), 256)


def test_an_unknown_window_still_caps_the_work(tok):
    """The app passes a window of 2**20 tokens for models whose window it does not know."""
    from pocketlm.runtime.generation import MAX_PROMPT_CHARS_KEPT

    counting = CountingTokenizer(tok)
    prompt = "All the world's a stage. " * 40_000  # 1 MB
    p = prepare_prompt(counting, prompt, GenerationConfig(max_new_tokens=5), 1 << 20)
    assert counting.chars <= 2 * MAX_PROMPT_CHARS_KEPT and p.truncated
    assert prompt.endswith(p.text)
