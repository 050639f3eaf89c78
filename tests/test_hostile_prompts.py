"""Bad and unusual prompts: each is handled as documented in docs/reliability.md."""

from __future__ import annotations

import time

import pytest

from pocketlm.config import GenerationConfig
from pocketlm.errors import PromptError
from pocketlm.runtime import complete, load_model, stream

ODD_PROMPTS = {
    "emoji": "The robot 🤖 said 🎉🎉 and left 👋🏽",
    "persian": "سلام، حال شما چطور است؟ امروز هوا خوب است",
    "arabic": "مرحبا بالعالم، كيف حالك اليوم؟",
    "mixed": "English, العربية, 漢字, русский, ελληνικά and हिन्दी in one line",
    "control": "tab\there\x01\x02\x1b[31m red \x7f and a bell\x07",
    "nul": "before\x00after",
    "combining": "e\u0301 n\u0303 Z\u0351\u0352\u0353algo",
    "bidi-marks": "\u202eevil\u202c text with \u200d zero width \ufeff bom",
    "lone-newlines": "\n\n\nword\n\n",
}


@pytest.fixture(scope="module")
def model(tiny_models):
    return load_model(tiny_models["dynamic-int8"])


@pytest.mark.parametrize("name", sorted(ODD_PROMPTS))
def test_odd_prompts_complete_and_stream_whole_characters(model, name):
    prompt = ODD_PROMPTS[name]
    done = stream(model, prompt, GenerationConfig(max_new_tokens=24, temperature=1.0, seed=1))
    pieces = list(done)
    if done.prompt.truncated:  # the tiny model's window is 64 tokens
        assert prompt.endswith(done.prompt.text) and "\ufffd" not in done.prompt.text
    else:
        assert done.prompt.text == prompt
    for piece in pieces:
        piece.encode("utf-8")  # no lone surrogates: whole characters only
    assert "".join(pieces) == done.text
    assert len(done.token_ids) <= 24


@pytest.mark.parametrize("prompt", ["", " ", "\n\t  \r\n", b"", b"\xc3\x28", b"ok\xff",
                                    b"\xed\xa0\x80surrogate", "lone \ud800 surrogate"])
def test_empty_or_invalid_prompts_are_refused(model, prompt):
    with pytest.raises(PromptError):
        complete(model, prompt, GenerationConfig(max_new_tokens=4))


def test_a_megabyte_prompt_is_cut_to_the_window_quickly(model):
    prompt = ("All the world's a stage, and all the men and women merely players. " * 16000)
    assert len(prompt) > 1_000_000
    t0 = time.perf_counter()
    done = complete(model, prompt, GenerationConfig(max_new_tokens=8))
    assert time.perf_counter() - t0 < 10
    assert done.prompt.truncated
    assert len(done.prompt.ids) <= model.sequence_length - 8
    assert prompt.endswith(done.prompt.text)


def test_prompt_longer_than_the_window_keeps_its_end(model):
    words = [f"w{i}" for i in range(400)]
    done = complete(model, " ".join(words), GenerationConfig(max_new_tokens=10))
    assert done.prompt.truncated and done.prompt.text.endswith("w399")
    assert len(done.prompt.fed_ids) + len(done.token_ids) <= model.sequence_length


def test_generation_stops_when_the_window_is_full(model):
    done = complete(model, "word " * 20, GenerationConfig(max_new_tokens=1000,
                                                          stop_at_end_token=False))
    assert done.stop_reason == "window_full"
    # The start token takes a row of the cache too.
    assert len(done.prompt.fed_ids) + len(done.token_ids) == model.sequence_length + 1


@pytest.mark.parametrize("prompt", [
    "Floccinaucinihilipilification" * 2200,  # the sample: one 63 KB word
    "".join(chr(0x4E00 + i % 2000) for i in range(60_000)),  # 60k CJK characters, no space
    "🌍🤖" * 20_000,
])
def test_a_long_single_word_prompt_is_cut_in_milliseconds(model, prompt):
    t0 = time.perf_counter()
    done = complete(model, prompt, GenerationConfig(max_new_tokens=4))
    assert time.perf_counter() - t0 < 2  # was 131 s for the first sample
    assert done.prompt.truncated and prompt.endswith(done.prompt.text)
    assert len(done.prompt.ids) <= model.sequence_length - 4


@pytest.mark.parametrize("name", ["emoji", "mixed", "persian", "combining"])
@pytest.mark.parametrize("window", [1, 2, 3, 5, 8])
def test_a_token_window_never_feeds_orphan_bytes(model, name, window):
    prompt = ODD_PROMPTS[name]
    cfg = GenerationConfig(max_new_tokens=2, context_window=window)
    try:
        done = complete(model, prompt, cfg)
    except PromptError as exc:
        assert "holds no whole character" in str(exc)
        return
    first = model.tokenizer.token_bytes[done.prompt.ids[0]][:1]
    assert not first or first[0] & 0xC0 != 0x80
    assert prompt.endswith(done.prompt.text) and "\ufffd" not in done.prompt.text
    assert len(done.prompt.ids) <= window
