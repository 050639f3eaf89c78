"""Compatibility names for code written before :mod:`pocketlm.tokenizers` existed.

``BPETokenizer`` is :class:`pocketlm.tokenizers.BytePairTokenizer` with the old constructor
(``end_token`` by name); new code should use :mod:`pocketlm.tokenizers` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .tokenizers import (END_OF_TEXT, BytePairTokenizer, SpecialTokens, TextStreamer, Tokenizer,
                         bytes_to_unicode, gpt2_vocab_files, read_bpe_files, read_merges,
                         tokenizer_from_bytes)


__all__ = ["END_OF_TEXT", "BPETokenizer", "TextStreamer", "Tokenizer", "bytes_to_unicode",
           "gpt2_vocab_files", "read_merges", "tokenizer_from_bytes"]


class BPETokenizer(BytePairTokenizer):
    """GPT-2 style byte-level BPE whose ``end_token`` also starts text, as in GPT-2.

    As before, an ``end_token`` missing from ``vocab`` falls back to the last id's token.
    """

    def __init__(self, vocab: Mapping[str, int], merges: Iterable[str | Sequence[str]],
                 end_token: str = END_OF_TEXT) -> None:
        if end_token not in vocab and vocab:
            last = len(vocab) - 1
            end_token = next((t for t, i in vocab.items() if i == last), end_token)
        super().__init__(vocab, merges, SpecialTokens(start=end_token, end=end_token))

    @property
    def end_token(self) -> str | None:
        return self.special_tokens.end

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path,  # type: ignore[override]
                   ) -> BPETokenizer:
        return cls(*read_bpe_files(vocab_json, merges_txt))

    @classmethod
    def gpt2(cls) -> BPETokenizer:  # type: ignore[override]
        return cls.from_files(*gpt2_vocab_files())
