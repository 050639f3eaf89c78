"""Choosing the next token from logits: penalties and bias, then greedy or temperature,
top-k, min-p, top-p sampling (seeded); and log-probabilities for ``logprobs``."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..config import GenerationConfig
from ..errors import PromptError


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Natural-log probabilities of ``logits`` (1-D, any float dtype) as float64."""
    x = np.asarray(logits, dtype=np.float64).reshape(-1)
    shifted = x - np.max(x)
    return shifted - np.log(np.sum(np.exp(shifted)))


@dataclass
class TokenLogprob:
    """One token's log-probability (natural log, under the model's own distribution, before
    penalties, bias or temperature) and the ``top`` most likely tokens at its position as
    (token id, log-probability), most likely first."""

    token_id: int
    logprob: float | None  # None for a prompt's first token (nothing predicts it)
    top: list[tuple[int, float]] = field(default_factory=list)
    offset: int = 0  # characters of text before this token's (in its own text)


def token_logprob(logits: np.ndarray, token: int, n: int, offset: int = 0) -> TokenLogprob:
    """``token``'s log-probability under ``logits`` and the ``n`` most likely tokens."""
    lp = log_softmax(logits)
    top = np.argsort(-lp, kind="stable")[:n] if n else []
    return TokenLogprob(int(token), float(lp[token]), [(int(i), float(lp[i])) for i in top],
                        offset)


class Sampler:
    """Picks token ids from logits; one instance per completion (it owns the RNG and counts
    the tokens it picked, for the penalties).

    ``context``: the prompt's token ids (``repeat_penalty`` looks back over them too).
    """

    def __init__(self, cfg: GenerationConfig, context: Sequence[int] = ()) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(None if cfg.seed is None else cfg.seed % 2**64)
        self.history: list[int] = list(context)
        self.counts: Counter[int] = Counter()  # generated tokens only (OpenAI's penalties)

    def adjust(self, logits: np.ndarray) -> np.ndarray:
        """The logits after ``logit_bias`` and the penalties (float64, a copy).

        Raises :class:`PromptError` when ``logit_bias`` names a token the model lacks."""
        x = np.array(logits, dtype=np.float64).reshape(-1)
        cfg = self.cfg
        if cfg.logit_bias:
            ids = np.fromiter(cfg.logit_bias, dtype=np.int64)
            if ids.max() >= x.size:
                bad = sorted(int(i) for i in ids if i >= x.size)[:5]
                raise PromptError(f"logit_bias names token ids the model does not have "
                                  f"({', '.join(map(str, bad))}; it has {x.size} tokens)")
            x[ids] += np.fromiter(cfg.logit_bias.values(), dtype=np.float64)
        if cfg.repeat_penalty != 1.0 and cfg.repeat_last_n != 0 and self.history:
            recent = self.history if cfg.repeat_last_n < 0 else self.history[-cfg.repeat_last_n:]
            ids = np.unique(np.asarray(recent, dtype=np.int64))
            ids = ids[(ids >= 0) & (ids < x.size)]
            vals = x[ids]
            x[ids] = np.where(vals > 0, vals / cfg.repeat_penalty, vals * cfg.repeat_penalty)
        if (cfg.frequency_penalty or cfg.presence_penalty) and self.counts:
            ids = np.fromiter(self.counts, dtype=np.int64)
            counts = np.fromiter(self.counts.values(), dtype=np.float64)
            keep = ids < x.size
            x[ids[keep]] -= counts[keep] * cfg.frequency_penalty + cfg.presence_penalty
        return x

    def __call__(self, logits: np.ndarray) -> int:
        token = self.choose(self.adjust(logits))
        self.history.append(token)
        self.counts[token] += 1
        return token

    def choose(self, logits: np.ndarray) -> int:
        """Greedy (temperature 0) or sampled pick from already adjusted logits."""
        cfg = self.cfg
        if cfg.temperature == 0.0:
            return int(np.argmax(logits))
        # Shift first, so that a tiny temperature sends the others to -inf, not the top to
        # +inf (inf - inf would be NaN).
        with np.errstate(over="ignore"):
            logits = (logits - np.max(logits)) / cfg.temperature
        if cfg.top_k and cfg.top_k < logits.size:
            # Everything below the k-th largest logit is dropped.
            kth = np.partition(logits, -cfg.top_k)[-cfg.top_k]
            logits = np.where(logits < kth, -np.inf, logits)
        probs = np.exp(logits - np.max(logits))
        probs /= probs.sum()
        if cfg.min_p > 0.0:
            # Relative to the most likely token, so min_p = 1 keeps only the top one(s).
            probs = np.where(probs >= cfg.min_p * probs.max(), probs, 0.0)
            probs /= probs.sum()
        if cfg.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = order[: int(np.searchsorted(cumulative, cfg.top_p) + 1)]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(probs.size, p=probs))
