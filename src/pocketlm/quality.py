"""What quantization costs in quality: perplexity, agreement, KL, greedy divergence.

Perplexity uses the sliding window with a stride, as the GPT-2 paper's WikiText numbers (and
Hugging Face's "perplexity of fixed-length models" guide) are computed: each window of
``window`` tokens predicts only the tokens the previous window did not, so every token after
the first is scored once, with up to ``window - stride`` tokens of context.

Everything here works on ``scorer(ids) -> logits (len(ids), vocab)`` callables, so the same
code scores the Keras float model and any ``.tflite`` (no TensorFlow imported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

Scorer = Callable[[list[int]], np.ndarray]
Progress = Callable[[int, int], None]


def windows(n_tokens: int, window: int, stride: int) -> Iterator[tuple[int, int, int]]:
    """(begin, end, first_scored) for each window: positions first_scored..end-1 are scored
    (a position's logits predict the next token, so targets are first_scored+1..end)."""
    if window < 2 or not 0 < stride <= window:
        raise ValueError("need window >= 2 and 0 < stride <= window")
    prev_end = 0
    begin = 0
    while True:
        end = min(begin + window, n_tokens)
        # Targets are ids[prev_end+1 .. end-1]; their predicting positions start at prev_end.
        yield begin, end, max(prev_end, begin + 1) - 1
        prev_end = end
        if end >= n_tokens:
            return
        begin += stride


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@dataclass
class QualityTotals:
    """Running sums for one model over the evaluated windows."""

    nll: float = 0.0
    tokens: int = 0
    agree: int = 0
    kl: float = 0.0
    compared: int = 0

    def as_dict(self) -> dict[str, float | int | None]:
        ppl = math.exp(self.nll / self.tokens) if self.tokens else None
        return {"perplexity": ppl, "tokens": self.tokens,
                "top1_agreement": self.agree / self.compared if self.compared else None,
                "mean_kl": self.kl / self.compared if self.compared else None}


@dataclass
class Evaluation:
    reference: str | None
    window: int
    stride: int
    totals: dict[str, QualityTotals] = field(default_factory=dict)

    def results(self) -> dict[str, dict]:
        out = {name: t.as_dict() for name, t in self.totals.items()}
        if self.reference:
            out[self.reference]["top1_agreement"] = None
            out[self.reference]["mean_kl"] = None
        return out


def evaluate(ids: list[int], scorers: dict[str, Scorer], window: int, stride: int,
             reference: str | None = None, progress: Progress | None = None) -> Evaluation:
    """Sliding-window perplexity of every scorer; agreement and KL against ``reference``.

    Windows are evaluated one at a time for all models at once, so the reference's logits
    are never all held in memory (a WikiText split is 10^5 tokens x 50,257 logits).
    """
    if len(ids) < 2:
        raise ValueError("need at least two tokens to evaluate")
    result = Evaluation(reference, window, stride, {n: QualityTotals() for n in scorers})
    spans = list(windows(len(ids), window, stride))
    ids_arr = np.asarray(ids)
    for i, (begin, end, first) in enumerate(spans):
        chunk = ids[begin:end]
        targets = ids_arr[first + 1:end]
        rows = slice(first - begin, end - 1 - begin)
        ref_logp = None
        logps = {}
        for name, scorer in scorers.items():
            logp = _log_softmax(np.asarray(scorer(chunk))[rows])
            logps[name] = logp
            t = result.totals[name]
            t.nll -= float(logp[np.arange(len(targets)), targets].sum())
            t.tokens += len(targets)
        if reference is not None:
            ref_logp = logps[reference]
            ref_top = ref_logp.argmax(-1)
            ref_p = np.exp(ref_logp)
            for name, logp in logps.items():
                if name == reference:
                    continue
                t = result.totals[name]
                t.agree += int((logp.argmax(-1) == ref_top).sum())
                t.kl += float((ref_p * (ref_logp - logp)).sum())
                t.compared += len(targets)
        if progress:
            progress(i + 1, len(spans))
    return result


def greedy_match(reference: list[int], candidate: list[int]) -> int:
    """How many tokens match before the first divergence."""
    n = 0
    for a, b in zip(reference, candidate):
        if a != b:
            break
        n += 1
    return n
