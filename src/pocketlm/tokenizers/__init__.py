"""Tokenizers for every KerasHub decoder family, behind one interface, without TensorFlow.

* :class:`BytePairTokenizer` (kind ``"gpt2-bpe"``): byte-level BPE from a vocabulary and
  merges (GPT-2, OPT, Bloom, Falcon, GPT-NeoX, Llama 3, Qwen, SmolLM3), via HF ``tokenizers``.
* :class:`SentencePieceTokenizer` (kind ``"sentencepiece"``): a SentencePiece model proto
  (Llama, Mistral, Phi-3, Gemma), via ``sentencepiece``.

Both implement :class:`Tokenizer`; :func:`tokenizer_from_bytes` reads any of them back from
:meth:`Tokenizer.to_bytes` (the ``pocketlm.tokenizer`` metadata of a model file).
"""

from .base import SpecialTokens, Streamer, TextStreamer, Tokenizer, tokenizer_from_bytes
from .bpe import (END_OF_TEXT, BytePairTokenizer, bytes_to_unicode, gpt2_vocab_files,
                  read_bpe_files, read_merges)
from .spm import SentencePieceStreamer, SentencePieceTokenizer

__all__ = ["END_OF_TEXT", "BytePairTokenizer", "SentencePieceStreamer", "SentencePieceTokenizer",
           "SpecialTokens", "Streamer", "TextStreamer", "Tokenizer", "bytes_to_unicode",
           "gpt2_vocab_files", "read_bpe_files", "read_merges", "tokenizer_from_bytes"]
