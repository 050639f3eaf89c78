"""The one interface every pocketlm tokenizer offers, its special tokens, and its file format.

Serialised form (the ``pocketlm.tokenizer`` metadata entry of a model file)::

    zlib.compress(HEADER [+ b"\\0" + PAYLOAD])

``HEADER`` is UTF-8 JSON with at least ``"kind"`` (which class reads it) and the special
tokens by name (``start_token``, ``end_token``, ``pad_token``, ``stop_tokens``,
``special_tokens``). ``PAYLOAD`` is optional raw bytes that a kind needs besides JSON (the
SentencePiece model proto). JSON never contains a raw NUL byte (it escapes U+0000 as
``\\u0000``), so the first NUL of the decompressed data always ends the header. A blob without
a payload is plain zlib JSON: exactly the format pocketlm wrote before this package existed
(``{"kind": "gpt2-bpe", "end_token", "vocab", "merges"}``), which still reads.
"""

from __future__ import annotations

import codecs
import json
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable, Protocol

from ..errors import TokenizerError


@dataclass(frozen=True)
class SpecialTokens:
    """Special tokens by their vocabulary string; ``None``/empty where a model has none.

    ``stop`` lists tokens that end generation besides ``end`` (Llama 3's ``<|eot_id|>``,
    Gemma's ``<end_of_turn>``); ``other`` lists further special tokens (chat markers) that
    ``encode(..., allow_special=True)`` maps to their ids. Every token named here decodes to
    nothing, as a model's control tokens should in generated text.
    """

    start: str | None = None
    end: str | None = None
    pad: str | None = None
    stop: tuple[str, ...] = ()
    other: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """Every token named here, each once, in a stable order."""
        seen = [t for t in (self.start, self.end, self.pad, *self.stop, *self.other) if t]
        return tuple(dict.fromkeys(seen))

    def to_header(self) -> dict[str, Any]:
        return {"start_token": self.start, "end_token": self.end, "pad_token": self.pad,
                "stop_tokens": list(self.stop), "special_tokens": list(self.other)}

    @classmethod
    def from_header(cls, header: dict[str, Any]) -> SpecialTokens:
        def name(key: str) -> str | None:
            value = header.get(key)
            if value is not None and not isinstance(value, str):
                raise TokenizerError(f"the embedded tokenizer is corrupt: {key} is not a string")
            return value

        def names(key: str) -> tuple[str, ...]:
            value = header.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise TokenizerError(f"the embedded tokenizer is corrupt: {key} is not a list "
                                     "of strings")
            return tuple(value)

        return cls(name("start_token"), name("end_token"), name("pad_token"),
                   names("stop_tokens"), names("special_tokens"))


class Streamer(Protocol):
    """Incremental detokenizer: the pieces it returns never split a UTF-8 character."""

    def push(self, token_id: int) -> str: ...

    def flush(self) -> str: ...


class Tokenizer(ABC):
    """A tokenizer the runtime can use: ids in ``[0, vocabulary_size)``, text as ``str``.

    Subclasses set ``kind`` (stored in the model file), fill ``token_bytes`` (the UTF-8 bytes
    each id stands for in running text; ``b""`` for special and control tokens) and call
    :meth:`_set_special_tokens` once their vocabulary is known.
    """

    kind: ClassVar[str]
    token_bytes: list[bytes]
    special_tokens: SpecialTokens

    # -- what every kind implements ----------------------------------------------------------
    @abstractmethod
    def encode(self, text: str, *, allow_special: bool = False) -> list[int]:
        """Token ids of ``text``; no start/end token is added.

        With ``allow_special=False`` a special token's string in ``text`` is plain text (a user
        typing ``<|endoftext|>`` gets the characters, not the control token). With ``True``
        each occurrence of a name in :attr:`special_tokens` becomes that token's id, and the
        text between them is encoded as its own piece (what chat templates need).
        Raises :class:`TokenizerError` for text the vocabulary cannot encode.
        """

    @abstractmethod
    def token_to_id(self, token: str) -> int | None:
        """The id of a vocabulary string (``"<|endoftext|>"``, ``"▁the"``), or ``None``."""

    @abstractmethod
    def id_to_token(self, token_id: int) -> str | None:
        """The vocabulary string of ``token_id``, or ``None`` if no token has that id."""

    @abstractmethod
    def streamer(self, *, continuation: bool = False) -> Streamer:
        """A fresh streaming decoder; ``"".join(pushes) + flush() == decode(ids)``.

        ``continuation=True`` when the ids continue text decoded before (a completion after
        its prompt): SentencePiece then keeps the space of the first piece, which at the start
        of a text it would drop as the dummy prefix. Byte-level BPE ignores it.
        """

    @abstractmethod
    def _header(self) -> dict[str, Any]:
        """The kind-specific part of the serialised header (JSON-able)."""

    def _payload(self) -> bytes | None:
        """Raw bytes stored after the header, if this kind needs any."""
        return None

    @classmethod
    @abstractmethod
    def _from_parts(cls, header: dict[str, Any], payload: bytes | None) -> Tokenizer:
        """Rebuild from what :meth:`to_bytes` stored (``header`` includes the kind)."""

    # -- shared behaviour ---------------------------------------------------------------------
    @property
    def vocabulary_size(self) -> int:
        """Number of ids: one more than the largest id (a vocabulary may have holes)."""
        return len(self.token_bytes)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens and ids outside the vocabulary give nothing."""
        streamer = self.streamer()
        return "".join([streamer.push(int(i)) for i in ids]) + streamer.flush()

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """Raw bytes of ``ids`` (byte-level tokens may end inside a character)."""
        size = len(self.token_bytes)
        return b"".join(self.token_bytes[i] for i in ids if 0 <= i < size)

    def starts_inside_character(self, token_id: int) -> bool:
        """Whether ``token_id``'s bytes begin with a UTF-8 continuation byte (``10xxxxxx``).

        A prompt cut at a token boundary must not start with such a token.
        """
        head = self.token_bytes[token_id][:1] if 0 <= token_id < len(self.token_bytes) else b""
        return bool(head) and (head[0] & 0xC0) == 0x80

    @property
    def start_token_id(self) -> int | None:
        return self._special_ids["start"]

    @property
    def end_token_id(self) -> int | None:
        return self._special_ids["end"]

    @property
    def pad_token_id(self) -> int | None:
        return self._special_ids["pad"]

    @property
    def stop_token_ids(self) -> tuple[int, ...]:
        """Ids that end generation: the end token, then ``special_tokens.stop``."""
        return self._stop_ids

    @property
    def special_token_ids(self) -> frozenset[int]:
        """Ids of every named special token."""
        return frozenset(self._special_by_name.values())

    def to_bytes(self) -> bytes:
        """The serialised tokenizer (see the module docstring for the format)."""
        header = {"kind": self.kind, **self.special_tokens.to_header(), **self._header()}
        data = json.dumps(header, ensure_ascii=False).encode("utf-8")
        payload = self._payload()
        if payload is not None:
            data += b"\0" + payload
        return zlib.compress(data, 9)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Tokenizer:
        """Any kind of tokenizer from :meth:`to_bytes`'s output (see :func:`tokenizer_from_bytes`)."""
        return tokenizer_from_bytes(blob)

    def _set_special_tokens(self, special: SpecialTokens) -> None:
        """Resolve the names in ``special`` to ids; every name must be in the vocabulary."""
        self.special_tokens = special
        self._special_by_name: dict[str, int] = {}
        for name in special.names():
            token_id = self.token_to_id(name)
            if token_id is None:
                raise TokenizerError(f"the special token {name!r} is not in the vocabulary")
            self._special_by_name[name] = token_id
        self._special_ids = {role: (self._special_by_name[n] if n else None) for role, n in
                             (("start", special.start), ("end", special.end),
                              ("pad", special.pad))}
        stops = [self._special_by_name[n] for n in (special.end, *special.stop) if n]
        self._stop_ids = tuple(dict.fromkeys(stops))

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(kind={self.kind!r}, vocabulary_size="
                f"{self.vocabulary_size}, end_token={self.special_tokens.end!r})")


class TextStreamer:
    """Byte-level streaming: joins token bytes and holds back an unfinished UTF-8 character.

    Invalid bytes become U+FFFD, as ``bytes.decode("utf-8", errors="replace")`` does.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self._decoder.decode(self._tokenizer.decode_bytes([token_id]))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


_KINDS: dict[str, type[Tokenizer]] = {}


def register(cls: type[Tokenizer]) -> type[Tokenizer]:
    """Class decorator: ``tokenizer_from_bytes`` reads blobs whose kind is ``cls.kind``."""
    _KINDS[cls.kind] = cls
    return cls


def tokenizer_from_bytes(blob: bytes) -> Tokenizer:
    """Rebuild a tokenizer from :meth:`Tokenizer.to_bytes` (or a pre-package ``gpt2-bpe`` blob).

    Raises :class:`TokenizerError` if the blob is corrupt or of a kind this pocketlm lacks.
    """
    try:
        data = zlib.decompress(bytes(blob))
    except (zlib.error, TypeError) as exc:
        raise TokenizerError(f"the embedded tokenizer is corrupt: {exc}") from exc
    head, sep, payload = data.partition(b"\0")
    try:
        header = json.loads(head.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TokenizerError(f"the embedded tokenizer is corrupt: {exc}") from exc
    if not isinstance(header, dict):
        raise TokenizerError("the embedded tokenizer is corrupt: its header is not an object")
    kind = header.get("kind")
    cls = _KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise TokenizerError(f"the embedded tokenizer is of kind {kind!r}; this pocketlm reads "
                             f"{', '.join(sorted(_KINDS))}: upgrade pocketlm")
    try:
        return cls._from_parts(header, payload if sep else None)
    except TokenizerError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise TokenizerError(f"the embedded tokenizer is corrupt: {exc!r}") from exc
