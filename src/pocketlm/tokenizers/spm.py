"""SentencePiece (Llama, Mistral, Phi-3, Gemma) via the ``sentencepiece`` package.

Built from the serialized ``ModelProto`` bytes, which is what a KerasHub
``SentencePieceTokenizer`` preset stores as ``assets/tokenizer/vocabulary.spm``. Encoding is
``SentencePieceProcessor.encode`` with no sampling and no BOS/EOS, which is what KerasHub's
tf-text op computes, so the ids match KerasHub's. User-defined symbols of the proto (Gemma's
``<start_of_turn>``) are matched in any text by SentencePiece itself, as in KerasHub.

Decoding follows SentencePiece's own rules, one token at a time so that it can stream: control
tokens give nothing, ``<unk>`` gives " ⁇ ", ``▁`` is a space, the first visible piece loses
the space of the dummy prefix, and a run of byte-fallback tokens (``<0xE2>``) is UTF-8 whose
invalid bytes each become U+FFFD.
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Iterable


from ..errors import TokenizerError
from .base import SpecialTokens, Tokenizer, register

SPACE = "\u2581"  # "▁", SentencePiece's visible space
UNK_SURFACE = " \u2047 "  # " ⁇ ", SentencePiece's default text for <unk>
_NORMAL, _UNKNOWN, _CONTROL, _USER_DEFINED, _UNUSED, _BYTE = 1, 2, 3, 4, 5, 6  # Piece.Type


def _model_proto_class():
    """SentencePiece's ModelProto, imported when a SentencePiece model is first read: its
    generated module needs a recent protobuf runtime, which an older TensorFlow pins below
    (TF 2.19.1's venv), and byte-level BPE models must not depend on it. Raises
    TokenizerError naming the fix when the runtime is too old."""
    try:
        from sentencepiece import sentencepiece_model_pb2
    except Exception as exc:  # protobuf's VersionError: generated code newer than runtime
        raise TokenizerError(f"SentencePiece models need a newer protobuf than this "
                             f"environment has ({str(exc).splitlines()[0][:200]}): "
                             "pip install -U protobuf") from None
    return sentencepiece_model_pb2.ModelProto


@register
class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model (BPE or unigram) from its serialized proto.

    ``special_tokens`` default to the proto's own BOS, EOS and PAD pieces (as KerasHub's
    Llama/Gemma tokenizers name them). Raises :class:`TokenizerError` if ``proto`` is not a
    SentencePiece model.
    """

    kind = "sentencepiece"

    def __init__(self, proto: bytes, special_tokens: SpecialTokens | None = None) -> None:
        self.proto = bytes(proto)
        try:
            model = _model_proto_class().FromString(self.proto)
            import sentencepiece  # imported with the first SentencePiece model read
            self._sp = sentencepiece.SentencePieceProcessor(model_proto=self.proto)
        except Exception as exc:  # protobuf's DecodeError, sentencepiece's RuntimeError
            raise TokenizerError(f"not a SentencePiece model: {exc}") from exc
        if not model.pieces:
            raise TokenizerError("not a SentencePiece model: it has no pieces")
        spec = model.normalizer_spec
        if model.denormalizer_spec.precompiled_charsmap:
            # Decoding would rewrite text after the pieces; no KerasHub decoder family's model
            # has such rules, and failing beats decoding differently from SentencePiece.
            raise TokenizerError("SentencePiece models with a denormalizer are not supported")
        # SentencePiece drops the dummy-prefix space of the first visible piece only under
        # these options (and all leading spaces when it also collapses whitespace).
        self._strip_first_space = spec.add_dummy_prefix or spec.remove_extra_whitespaces
        self._strip_all_leading = spec.remove_extra_whitespaces
        self._types = [p.type for p in model.pieces]
        self._pieces = [p.piece for p in model.pieces]
        self._ids = {p: i for i, p in enumerate(self._pieces)}
        if special_tokens is None:
            def piece(i: int) -> str | None:
                return self._pieces[i] if 0 <= i < len(self._pieces) else None
            special_tokens = SpecialTokens(start=piece(self._sp.bos_id()),
                                           end=piece(self._sp.eos_id()),
                                           pad=piece(self._sp.pad_id()))
        self._set_special_tokens(special_tokens)
        self._skip = frozenset(self._special_by_name.values())
        self.token_bytes = [self._piece_bytes(i) for i in range(len(self._pieces))]
        # Tokens SentencePiece does not find in text by itself (control symbols such as
        # <s>): allow_special splits them out; user-defined ones it already matches.
        self._split_names = sorted((n for n, i in self._special_by_name.items()
                                    if self._types[i] != _USER_DEFINED), key=len, reverse=True)

    @classmethod
    def from_file(cls, path: str | Path,
                  special_tokens: SpecialTokens | None = None) -> SentencePieceTokenizer:
        """From a model file (KerasHub's ``assets/tokenizer/vocabulary.spm``)."""
        try:
            proto = Path(path).read_bytes()
        except OSError as exc:
            raise TokenizerError(f"cannot read tokenizer file: {exc}") from exc
        return cls(proto, special_tokens)

    def _piece_bytes(self, i: int) -> bytes:
        kind = self._types[i]
        if kind == _BYTE:
            return bytes((int(self._pieces[i][3:5], 16),))  # "<0xE2>"
        if kind == _CONTROL or i in self._skip:
            return b""
        if kind == _UNKNOWN:
            return UNK_SURFACE.encode("utf-8")
        return self._pieces[i].replace(SPACE, " ").encode("utf-8")

    def _visible_text(self, i: int, at_start: bool) -> tuple[str, bool]:
        """Text of the non-byte token ``i`` and whether the dummy-prefix space is still due."""
        kind = self._types[i]
        if kind == _CONTROL or i in self._skip:
            return "", at_start
        if kind == _UNKNOWN:
            return UNK_SURFACE, False
        piece = self._pieces[i]
        if at_start and self._strip_first_space:
            if self._strip_all_leading:  # collapsing whitespace: all leading spaces go
                stripped = piece.lstrip(SPACE)
                at_start = not stripped
            else:  # only the one dummy-prefix space goes
                stripped = piece.removeprefix(SPACE)
                at_start = not (stripped != piece or stripped)
            piece = stripped
        return piece.replace(SPACE, " "), at_start

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Raw UTF-8 of ``ids`` under SentencePiece's rules, byte tokens as they are."""
        out = bytearray()
        at_start = True
        for token_id in ids:
            i = int(token_id)
            if not 0 <= i < len(self._types):
                continue
            if self._types[i] == _BYTE:
                out += self.token_bytes[i]
                at_start = False
            else:
                text, at_start = self._visible_text(i, at_start)
                out += text.encode("utf-8")
        return bytes(out)

    def is_byte(self, token_id: int) -> bool:
        """Whether ``token_id`` is a byte-fallback token (``<0x00>`` .. ``<0xFF>``)."""
        return 0 <= token_id < len(self._types) and self._types[token_id] == _BYTE

    # -- serialisation -------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {}

    def _payload(self) -> bytes:
        return self.proto

    @classmethod
    def _from_parts(cls, header: dict[str, Any], payload: bytes | None) -> SentencePieceTokenizer:
        if not payload:
            raise TokenizerError("the embedded tokenizer is corrupt: no SentencePiece model")
        return cls(payload, SpecialTokens.from_header(header))

    # -- the interface -------------------------------------------------------------------
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise TokenizerError(f"the text is not valid Unicode (a lone surrogate at "
                                 f"character {exc.start})") from None
        if not allow_special or not self._split_names:
            return self._sp.encode(text)
        ids: list[int] = []
        start = 0
        while start < len(text):
            # The earliest special token; the longest one where several start there.
            hits = [(text.find(n, start), -len(n), n) for n in self._split_names]
            hits = [h for h in hits if h[0] >= 0]
            if not hits:
                break
            at, _, name = min(hits)
            if at > start:
                ids.extend(self._sp.encode(text[start:at]))
            ids.append(self._special_by_name[name])
            start = at + len(name)
        if start < len(text):
            ids.extend(self._sp.encode(text[start:]))
        return ids

    def token_to_id(self, token: str) -> int | None:
        return self._ids.get(token)

    def id_to_token(self, token_id: int) -> str | None:
        i = int(token_id)
        return self._pieces[i] if 0 <= i < len(self._pieces) else None

    def streamer(self, *, continuation: bool = False) -> SentencePieceStreamer:
        return SentencePieceStreamer(self, continuation)


class SentencePieceStreamer:
    """SentencePiece's decoding rules, token by token, never splitting a character."""

    def __init__(self, tokenizer: SentencePieceTokenizer, continuation: bool = False) -> None:
        self._tok = tokenizer
        self._pending = bytearray()  # the current run of byte tokens not yet returned
        # At the start of a text the first "▁" is the dummy prefix, not a space to show.
        self._at_start = not continuation

    def push(self, token_id: int) -> str:
        tok = self._tok
        i = int(token_id)
        if not 0 <= i < len(tok.token_bytes):
            return ""
        if tok._types[i] == _BYTE:
            self._pending += tok.token_bytes[i]
            self._at_start = False
            return self._drain(final=False)
        out = self._drain(final=True)  # any other token ends a run of bytes
        text, self._at_start = tok._visible_text(i, self._at_start)
        return out + text

    def flush(self) -> str:
        return self._drain(final=True)

    def _drain(self, final: bool) -> str:
        """Text of the whole characters in the pending bytes; at the run's end (``final``)
        each byte that does not complete a valid character becomes one U+FFFD, as in
        SentencePiece (Python's ``errors="replace"`` would merge some of them)."""
        out = []
        while self._pending:
            try:
                text, used = codecs.utf_8_decode(bytes(self._pending), "strict", final)
            except UnicodeDecodeError as exc:
                out.append(self._pending[:exc.start].decode("utf-8") + "\ufffd")
                del self._pending[:exc.start + 1]
                continue
            out.append(text)
            del self._pending[:used]
            break  # what is left (not final) is the start of a character still to come
        return "".join(out)

