"""Tiny random models of every family, built offline: a tokenizer trained here on a few KB of
text (byte-level BPE with HF ``tokenizers``, SentencePiece with ``sentencepiece``) plus the
family's tiny backbone config (:attr:`pocketlm.families.Family.tiny`) with random weights.

For tests, benchmarks and trying the pipeline without a model hub:
``pocketlm convert --random tiny --family qwen3``.
"""

from __future__ import annotations

import io
import json
from functools import lru_cache

from .authoring import AuthoredModel, random_causal_lm
from .config import DEFAULT_SEQUENCE_LENGTH
from .families import BPE, Family, get_family
from .quiet import filtered_stderr

# Enough text for a few hundred merges or pieces: letters, digits, punctuation, newlines,
# a few non-ASCII characters (so byte fallback and multi-byte merges get exercised).
TRAINING_TEXT = """\
First Citizen: Before we proceed any further, hear me speak.
All: Speak, speak. You are all resolved rather to die than to famish?
I'm enjoying a walk in the park today; the weather is fine and the birds sing.
The quick brown fox jumps over the lazy dog 1234567890 times, or so they say.
Café, naïve, façade, jalapeño: accents travel well. Emoji too: 🌍 🙂 and 中文 text.
When in the course of human events it becomes necessary for one people to dissolve
the political bands which have connected them with another, a decent respect to the
opinions of mankind requires that they should declare the causes of their separation.
We hold these truths to be self-evident, that all men are created equal.
Once upon a time there was a little model that wanted to run on a phone.
It learned to predict the next token, and the next, and the next one after that.
"""


def _corpus() -> list[str]:
    lines = TRAINING_TEXT.splitlines()
    # Repeat with small variations so trainers see enough pairs.
    return [f"{line} {i}" if i % 3 else line for i in range(8) for line in lines]


@lru_cache(maxsize=None)
def _bpe_files(specials: tuple[str, ...], vocab_size: int) -> tuple[dict, list]:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(_corpus(), trainer)
    state = json.loads(tok.to_str())["model"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in state["merges"]]
    return dict(state["vocab"]), merges


@lru_cache(maxsize=None)
def _spm_proto(start: str, end: str, extra: tuple[str, ...], vocab_size: int) -> bytes:
    import sentencepiece as spm

    out = io.BytesIO()
    # Specials as control pieces at fixed ids, so KerasHub's tokenizer finds them; byte
    # fallback so any text encodes; identity normalization keeps the proto tiny.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=out, vocab_size=vocab_size,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity",
        character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=3,
        unk_piece="<unk>", bos_piece=start, eos_piece=end, pad_piece="<pad>"
        if "<pad>" not in (start, end) else "<padding>",
        user_defined_symbols=[t for t in extra if t not in ("<pad>",)] or None,
        num_threads=1, minloglevel=2, remove_extra_whitespaces=False)
    return out.getvalue()


def tiny_keras_tokenizer(family: Family, vocab_size: int = 400):
    """A KerasHub tokenizer of ``family``'s class, trained here on :data:`TRAINING_TEXT`."""
    import keras_hub

    cls = getattr(keras_hub.models, family.tokenizer)
    if family.tokenizer_kind == BPE:
        vocab, merges = _bpe_files(tuple(family.special_tokens), vocab_size)
        return cls(vocabulary=vocab, merges=merges)
    start, end, *extra = family.special_tokens
    with filtered_stderr():  # SentencePiece's info lines on loading its model
        return cls(proto=_spm_proto(start, end, tuple(extra), vocab_size))


def tiny_causal_lm(family: Family | str, sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
                   seed: int = 0) -> AuthoredModel:
    """A tiny random causal LM of ``family`` with a tokenizer trained here."""
    fam = get_family(family) if isinstance(family, str) else family
    ktok = tiny_keras_tokenizer(fam)
    config = {"family": fam.name, **fam.tiny, "vocabulary_size": int(ktok.vocabulary_size())}
    return random_causal_lm(config, sequence_length=sequence_length, seed=seed,
                            keras_tokenizer=ktok)
