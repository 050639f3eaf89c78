"""Choosing the next token from logits: greedy, temperature, top-k, top-p, seeded."""

from __future__ import annotations

import numpy as np

from ..config import GenerationConfig


class Sampler:
    """Picks token ids from logits; one instance per completion (it owns the RNG)."""

    def __init__(self, cfg: GenerationConfig) -> None:
        self.cfg = cfg
        self.rng = np.random.default_rng(cfg.seed)

    def __call__(self, logits: np.ndarray) -> int:
        logits = np.asarray(logits, dtype=np.float64).reshape(-1)
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
        if cfg.top_p < 1.0:
            order = np.argsort(-probs, kind="stable")
            cumulative = np.cumsum(probs[order])
            # Keep the smallest prefix whose mass reaches top_p (always at least one token).
            keep = order[: int(np.searchsorted(cumulative, cfg.top_p) + 1)]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(self.rng.choice(probs.size, p=probs))
