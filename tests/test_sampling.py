"""Sampling: greedy, temperature, top-k, top-p, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from pocketlm.config import GenerationConfig
from pocketlm.runtime.sampling import Sampler

LOGITS = np.log(np.array([0.05, 0.5, 0.3, 0.1, 0.05]))


def test_greedy_is_argmax():
    assert Sampler(GenerationConfig(temperature=0.0))(LOGITS) == 1


def test_top_k_one_is_greedy_at_any_temperature():
    s = Sampler(GenerationConfig(temperature=5.0, top_k=1, seed=3))
    assert {s(LOGITS) for _ in range(50)} == {1}


def test_top_p_keeps_the_smallest_nucleus():
    s = Sampler(GenerationConfig(temperature=1.0, top_p=0.75, seed=0))
    assert {s(LOGITS) for _ in range(300)} == {1, 2}


def test_same_seed_same_tokens_and_temperature_spreads():
    a = Sampler(GenerationConfig(temperature=1.0, seed=7))
    b = Sampler(GenerationConfig(temperature=1.0, seed=7))
    seq_a = [a(LOGITS) for _ in range(100)]
    assert seq_a == [b(LOGITS) for _ in range(100)]
    assert len(set(seq_a)) >= 4  # all but the rarest tokens show up in 100 draws


@pytest.mark.parametrize("kwargs", [{"temperature": -1}, {"top_p": 0}, {"top_k": -2},
                                    {"max_new_tokens": -1}, {"context_window": 0}])
def test_invalid_settings_are_rejected(kwargs):
    with pytest.raises(ValueError):
        GenerationConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"temperature": float("nan")}, {"temperature": float("inf")}, {"top_p": float("nan")},
    {"min_p": float("nan")}, {"min_p": 1.5}, {"frequency_penalty": float("-inf")},
    {"frequency_penalty": 2.5}, {"presence_penalty": -3}, {"repeat_penalty": 0},
    {"repeat_penalty": float("inf")}, {"repeat_last_n": -2}, {"max_new_tokens": 10**400},
    {"temperature": True}, {"top_k": 2.5}, {"seed": 2**70}, {"logprobs": 6},
    {"logit_bias": {3: 101}}, {"logit_bias": {3: float("nan")}}, {"logit_bias": {-1: 1}},
    {"stop": [""]}, {"stop": ["a", "b", "c", "d", "e"]}, {"temperature": "0.5"},
])
def test_numbers_must_be_finite_and_in_range(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_bias")[0]):
        GenerationConfig(**kwargs)


def test_logit_bias_forces_and_bans_tokens():
    assert Sampler(GenerationConfig(logit_bias={4: 100}))(LOGITS) == 4
    banned = Sampler(GenerationConfig(temperature=1.0, seed=0, logit_bias={1: -100, 2: -100}))
    assert {banned(LOGITS) for _ in range(200)} == {0, 3, 4}


def test_logit_bias_outside_the_vocabulary_is_an_error():
    from pocketlm.errors import PromptError

    with pytest.raises(PromptError, match="logit_bias"):
        Sampler(GenerationConfig(logit_bias={5: 1.0}))(LOGITS)


def test_frequency_and_presence_penalties_follow_openai():
    """logit[j] -= count[j] * frequency_penalty + (count[j] > 0) * presence_penalty."""
    s = Sampler(GenerationConfig(frequency_penalty=0.5, presence_penalty=0.25))
    for token in (1, 1, 3):
        s.counts[token] += 1
    want = LOGITS.copy()
    want[1] -= 2 * 0.5 + 0.25
    want[3] -= 1 * 0.5 + 0.25
    np.testing.assert_allclose(s.adjust(LOGITS), want)


def test_a_frequency_penalty_breaks_a_greedy_repeat():
    greedy = Sampler(GenerationConfig())
    assert [greedy(LOGITS) for _ in range(3)] == [1, 1, 1]
    penalized = Sampler(GenerationConfig(frequency_penalty=2.0))
    assert [penalized(LOGITS) for _ in range(3)] == [1, 2, 3]  # each pick costs it 2


def test_repeat_penalty_follows_llama_cpp():
    """Over the last repeat_last_n tokens (prompt included): positive logits divided,
    negative ones multiplied."""
    logits = np.array([2.0, -1.0, 3.0, 0.5])
    s = Sampler(GenerationConfig(repeat_penalty=2.0, repeat_last_n=2), context=[0, 1, 2])
    np.testing.assert_allclose(s.adjust(logits), [2.0, -2.0, 1.5, 0.5])  # 0 is too far back
    s = Sampler(GenerationConfig(repeat_penalty=2.0, repeat_last_n=-1), context=[0, 1, 2])
    np.testing.assert_allclose(s.adjust(logits), [1.0, -2.0, 1.5, 0.5])


def test_min_p_one_is_greedy_and_min_p_cuts_rare_tokens():
    s = Sampler(GenerationConfig(temperature=1.5, min_p=1.0, seed=1))
    assert {s(LOGITS) for _ in range(100)} == {1}
    s = Sampler(GenerationConfig(temperature=1.0, min_p=0.5, seed=1))  # p >= 0.25 stay
    assert {s(LOGITS) for _ in range(300)} == {1, 2}


def test_log_softmax_and_token_logprob():
    from pocketlm.runtime.sampling import log_softmax, token_logprob

    np.testing.assert_allclose(np.exp(log_softmax(LOGITS)), [0.05, 0.5, 0.3, 0.1, 0.05])
    lp = token_logprob(LOGITS, 2, 3)
    assert lp.logprob == pytest.approx(np.log(0.3))
    assert [i for i, _ in lp.top] == [1, 2, 3]


@pytest.mark.parametrize("pieces, stops, shown", [
    (["Hello wor", "ld. END", " more"], ["END"], "Hello world. "),
    (["a", "b", "c", "d"], ["bc"], "a"),  # spans pieces
    (["ab", "x", "y"], ["abc", "by"], "abxy"),  # a pending prefix that was not a stop
    (["The ", "en", "d is", " near"], ["end."], "The end is near"),  # released at the end
    (["one\n\ntwo"], ["\n\n", "one"], ""),  # the earliest stop wins
    (["x", "y"], [], "xy"),
])
def test_stop_sequences_across_pieces(pieces, stops, shown):
    from pocketlm.runtime.stops import StopMatcher

    m = StopMatcher(stops)
    out = []
    for p in pieces:
        out.append(m.push(p))
        assert not any(s in "".join(out) for s in stops)
    out.append(m.finish())
    assert "".join(out) == shown
