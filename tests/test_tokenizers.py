"""pocketlm.tokenizers: byte-level BPE exact against the old reference encoder and fast on long
words; SentencePiece exact against KerasHub and sentencepiece; streaming never splits a
character; the model-file format round-trips (and reads what older pocketlm wrote)."""

from __future__ import annotations

import io
import json
import random
import string
import time
import zlib

import pytest

from pocketlm.errors import TokenizerError
from pocketlm.tokenizers import (END_OF_TEXT, BytePairTokenizer, SentencePieceTokenizer,
                                 SpecialTokens, Tokenizer, tokenizer_from_bytes)

from . import reference_bpe
from .conftest import needs_convert

TRICKY = [
    "", " ", "  ", "   x", "\n", "\n\n", "\n\nNew", "!\n\nNew", "a\n\n\nb", "\t", "\ttab\t\t",
    "\r\n", " \r\n \r\n", "x  ", "trailing spaces   ", "  leading",
    "'s", "'st", " say'st", "'S 'T 'RE", "don't won't they're we've I'll he'd I'm",
    "''''", "'", "rock'n'roll", "it's it’s",  # a curly apostrophe is not a contraction
    "Emoji 🤖🎉😀😀 👩‍👩‍👧‍👦 🏳️‍🌈 👍🏽", "CJK 漢字かなカナ 한국어", "RTL سلام دنیا مرحبا שלום",
    "combining e\u0301 n\u0303 a\u0300\u0301\u0302 Z\u0335\u0336", "Zalgo: Z̷̢a̵l̸g̶o̴",
    "control \x00 \x01 \x07 \x1b[31m \x7f \x85 \u2028 \u2029", "zero\u200bwidth\u200c\u200d\ufeff",
    "odd \U0001d54f\U0001d560 \U000e0001 \U0010fffd \ufffd \uffff \u00a0\u3000",
    "numbers 0 12 345 6789 3.14159 1,000,000 ٣٤٥ 1e-9 0x1F", "١٢٣ ৪৫৬ ௭௮",
    "a" * 300, "Pneumonoultramicroscopicsilicovolcanoconiosis" * 5,
    "mixed: Straße Ελληνικά Русский हिन्दी ไทย 日本語 🤖",
    "<|endoftext|>", "text<|endoftext|>more", "<|im_start|>user\nhi<|im_end|>", "<|eot_id|>",
    "<s> </s> <unk> <pad> <0xE2> <start_of_turn>", "▁ ▁▁ x▁y",
    "ROMEO: What say'st thou? 12345\n\nJULIET:\tNothing.",
    "I'm enjoying a quiet evening.",
]

SPM_CORPUS = """\
First Citizen: Before we proceed any further, hear me speak.
All: Speak, speak. You are all resolved rather to die than to famish?
Resolved. resolved. First, you know Caius Marcius is chief enemy to the people.
We know't, we know't. Let us kill him, and we'll have corn at our own price.
Is't a verdict? No more talking on't; let it be done: away, away!
One word, good citizens. We are accounted poor citizens, the patricians good.
What authority surfeits on would relieve us: if they would yield us but the superfluity,
while it were wholesome, we might guess they relieved us humanely.
The quick brown fox jumps over the lazy dog. 0123456789 3.14 1,000
Numbers: one two three four five six seven eight nine ten eleven twelve.
Hello world! How are you today? I'm fine, thanks. Don't worry, be happy.
Tabs\tand  double  spaces and trailing spaces   and newlines.
café naïve résumé Straße über façade jalapeño
漢字 かな カナ 한국어 سلام دنیا שלום Русский текст Ελληνικά
emoji 🤖 🎉 😀 and more emoji 🚀 ✨
"""


# -- byte-level BPE --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gpt2() -> BytePairTokenizer:
    return BytePairTokenizer.gpt2()


@pytest.fixture(scope="module")
def reference() -> reference_bpe.BPETokenizer:
    return reference_bpe.BPETokenizer.gpt2()


def test_gpt2_special_tokens(gpt2):
    assert gpt2.kind == "gpt2-bpe" and gpt2.vocabulary_size == 50257
    assert gpt2.start_token_id == gpt2.end_token_id == 50256
    assert gpt2.stop_token_ids == (50256,) and gpt2.pad_token_id is None
    assert gpt2.token_to_id(END_OF_TEXT) == 50256 and gpt2.id_to_token(50256) == END_OF_TEXT
    assert gpt2.token_to_id("Ġthe") == 262 and gpt2.id_to_token(262) == "Ġthe"
    assert gpt2.token_to_id("no such token") is None and gpt2.id_to_token(10**6) is None
    assert gpt2.encode("I'm enjoying a") == [40, 1101, 13226, 257]


@pytest.mark.parametrize("text", TRICKY)
def test_bpe_matches_reference(gpt2, reference, text):
    ids = gpt2.encode(text)
    assert ids == reference.encode(text)
    assert gpt2.decode(ids) == text  # byte-level BPE is lossless
    assert gpt2.decode_bytes(ids) == text.encode("utf-8")


def test_bpe_matches_reference_on_random_text(gpt2, reference):
    rng = random.Random(0)
    pool = ("aeiouxyzAEZ '’sdtmlrv0123456789 \n\t\r!?.,;:-_()[]<|>éßñ漢字🤖\u0301\u200d"
            "\u00a0\u3000\u2028\x00\x1c\x85سلام")
    for _ in range(3000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(0, 40)))
        assert gpt2.encode(text) == reference.encode(text), repr(text)


@pytest.mark.parametrize("make", [lambda r: "a" * 3000, lambda r: "ab" * 1500,
                                  lambda r: "".join(r.choice(string.ascii_letters)
                                                    for _ in range(2500)),
                                  lambda r: " " + "".join(r.choice("漢字かな🤖é") for _ in range(800))])
def test_bpe_long_words_match_reference(gpt2, reference, make):
    text = make(random.Random(1))
    assert gpt2.encode(text) == reference.encode(text)


@pytest.mark.parametrize("name", ["a", "random", "mixed"])
def test_bpe_is_fast_on_a_64000_letter_word(gpt2, name):
    rng = random.Random(2)
    text = {"a": "a" * 64000,
            "random": "".join(rng.choice(string.ascii_letters) for _ in range(64000)),
            "mixed": "".join(rng.choice(string.ascii_letters + "éß") for _ in range(64000))}[name]
    t0 = time.perf_counter()
    ids = gpt2.encode(text)
    seconds = time.perf_counter() - t0
    assert gpt2.decode(ids) == text
    assert seconds < 1.0, f"{seconds:.2f} s for one 64,000-letter word"  # measured: ~0.05 s


def test_special_tokens_are_plain_text_unless_allowed(gpt2):
    text = "Hi<|endoftext|>there"
    assert 50256 not in gpt2.encode(text)
    assert gpt2.decode(gpt2.encode(text)) == text
    allowed = gpt2.encode(text, allow_special=True)
    assert allowed == gpt2.encode("Hi") + [50256] + gpt2.encode("there")
    assert gpt2.decode(allowed) == "Hithere"  # special tokens decode to nothing
    assert gpt2.encode(END_OF_TEXT * 2, allow_special=True) == [50256, 50256]


@pytest.fixture(scope="module")
def chat_bpe(gpt2) -> BytePairTokenizer:
    """GPT-2's vocabulary plus Qwen-style chat markers."""
    vocab = {**gpt2.vocab, "<|im_start|>": 50257, "<|im_end|>": 50258, "<|im_end|>x": 50259}
    return BytePairTokenizer(vocab, gpt2.merges, SpecialTokens(
        end=END_OF_TEXT, pad=END_OF_TEXT, stop=("<|im_end|>",),
        other=("<|im_start|>", "<|im_end|>x")))


def test_extra_special_tokens(chat_bpe, gpt2):
    tok = chat_bpe
    assert tok.stop_token_ids == (50256, 50258) and tok.pad_token_id == 50256
    assert tok.start_token_id is None
    assert tok.special_token_ids == {50256, 50257, 50258, 50259}
    text = "<|im_start|>user\nhi<|im_end|><|im_end|>x"
    assert tok.encode(text) == gpt2.encode(text)  # plain text by default
    ids = tok.encode(text, allow_special=True)
    # The longest special token wins where two start at the same place.
    assert ids == [50257] + gpt2.encode("user\nhi") + [50258, 50259]
    assert tok.decode(ids) == "user\nhi"
    again = tokenizer_from_bytes(tok.to_bytes())
    assert again.special_tokens == tok.special_tokens
    assert again.encode(text, allow_special=True) == ids


def test_bpe_serialisation_round_trip(gpt2):
    blob = gpt2.to_bytes()
    again = tokenizer_from_bytes(blob)
    assert isinstance(again, BytePairTokenizer) and again.kind == "gpt2-bpe"
    assert again.encode(TRICKY[25]) == gpt2.encode(TRICKY[25])
    assert (again.start_token_id, again.end_token_id) == (50256, 50256)
    assert Tokenizer.from_bytes(blob).vocabulary_size == 50257
    # Older pocketlm (the reference) reads the new blob too: same keys, no payload.
    assert reference_bpe.BPETokenizer.from_bytes(blob).encode("I'm here") == gpt2.encode("I'm here")


def test_reads_the_pre_package_blob(reference, gpt2):
    legacy = reference.to_bytes()
    assert set(json.loads(zlib.decompress(legacy))) == {"kind", "end_token", "vocab", "merges"}
    tok = tokenizer_from_bytes(legacy)
    assert tok.end_token_id == tok.start_token_id == 50256 and tok.stop_token_ids == (50256,)
    for text in TRICKY[20:30]:
        assert tok.encode(text) == reference.encode(text)
    # Without "end_token" old pocketlm assumed GPT-2's.
    payload = json.loads(zlib.decompress(legacy))
    del payload["end_token"]
    tok = tokenizer_from_bytes(zlib.compress(json.dumps(payload).encode()))
    assert tok.end_token_id == 50256


@pytest.mark.parametrize("blob,match", [
    (b"", "corrupt"), (b"garbage", "corrupt"), (zlib.compress(b"not json"), "corrupt"),
    (zlib.compress(b"[1, 2]"), "not an object"), (zlib.compress(b'{"kind": "wordpiece"}'),
                                                   "kind 'wordpiece'.*upgrade pocketlm"),
    (zlib.compress(b'{"kind": "gpt2-bpe"}'), "corrupt"),
    (zlib.compress(b'{"kind": "gpt2-bpe", "vocab": {"a": 0}, "merges": ["a a"]}'),
     "'aa', which is not in the vocabulary"),
    (zlib.compress(b'{"kind": "gpt2-bpe", "vocab": {"a": "x"}, "merges": []}'), "integer ids"),
    (zlib.compress(b'{"kind": "gpt2-bpe", "vocab": {"a": 0}, "merges": [], "end_token": 3}'),
     "_token is not a string"),
    (zlib.compress(b'{"kind": "gpt2-bpe", "vocab": {"a": 0}, "merges": []}'),
     "'<|endoftext|>' is not in the vocabulary"),
    (zlib.compress(b'{"kind": "sentencepiece"}'), "no SentencePiece model"),
    (zlib.compress(b'{"kind": "sentencepiece"}\0not a proto'), "not a SentencePiece model"),
])
def test_corrupt_blobs_raise_a_clear_error(blob, match):
    with pytest.raises(TokenizerError, match=match):
        tokenizer_from_bytes(blob)


def test_bpe_merges_as_lines_or_pairs():
    vocab = {"a": 0, "b": 1, "ab": 2, "abb": 3}
    lines = BytePairTokenizer(vocab, ["#version: 0.2", "a b", "", "ab b"])
    pairs = BytePairTokenizer(vocab, [("#version:", "0.2"), ("a", "b"), ("ab", "b")])
    assert lines.merges == pairs.merges == [("a", "b"), ("ab", "b")]
    assert lines.encode("abbab") == pairs.encode("abbab") == [3, 2]
    for bad in (["a b c"], [("a",)], ["a"]):
        with pytest.raises(TokenizerError, match="expected two symbols"):
            BytePairTokenizer(vocab, bad)


def test_bpe_refuses_text_its_vocabulary_cannot_spell():
    tok = BytePairTokenizer({"a": 0, "b": 1, "ab": 2}, ["a b"])
    assert tok.encode("abab") == [2, 2] and tok.end_token_id is None
    with pytest.raises(TokenizerError, match="no token for the byte 0x63"):
        tok.encode("abc")
    with pytest.raises(TokenizerError, match="lone surrogate"):
        tok.encode("a\ud800")


def test_bpe_streaming_never_splits_a_character(gpt2):
    text = "🤖 漢字 سلام 😀😀 é 👩‍👩‍👧‍👦"
    ids = gpt2.encode(text)
    streamer = gpt2.streamer()
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)
    assert any(p == "" for p in pieces[:-1])  # some emoji tokens are partial bytes
    inside = [gpt2.starts_inside_character(i) for i in ids]
    assert any(inside) and not inside[0]
    assert inside == [bool(gpt2.token_bytes[i]) and gpt2.token_bytes[i][0] & 0xC0 == 0x80
                      for i in ids]


# -- SentencePiece ---------------------------------------------------------------------------
SPM_SPECIALS = ["<start_of_turn>", "<end_of_turn>"]
# (model_type, add_dummy_prefix, remove_extra_whitespaces): Llama-like (prefix, keeps
# spaces), Gemma-like (no prefix) and SentencePiece's defaults (collapses whitespace).
SPM_CONFIGS = [("bpe", True, False), ("unigram", True, False), ("bpe", False, False),
               ("unigram", True, True)]


def train_spm(model_type: str, dummy_prefix: bool, collapse_spaces: bool) -> bytes:
    import sentencepiece

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SPM_CORPUS.splitlines() * 3), model_writer=out,
        model_type=model_type, vocab_size=420, hard_vocab_limit=False, byte_fallback=True,
        character_coverage=0.98, normalization_rule_name="identity",
        add_dummy_prefix=dummy_prefix, remove_extra_whitespaces=collapse_spaces,
        user_defined_symbols=SPM_SPECIALS, minloglevel=2)
    return out.getvalue()


@pytest.fixture(scope="module", params=SPM_CONFIGS, ids=lambda c: "-".join(map(str, c)))
def spm_proto(request) -> bytes:
    return train_spm(*request.param)


@pytest.fixture(scope="module")
def spm(spm_proto) -> SentencePieceTokenizer:
    return SentencePieceTokenizer(spm_proto)


@pytest.fixture(scope="module")
def sp_reference(spm_proto):
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_proto=spm_proto)


def test_spm_special_tokens(spm):
    assert spm.kind == "sentencepiece"
    assert (spm.start_token_id, spm.end_token_id, spm.pad_token_id) == (1, 2, None)
    assert spm.stop_token_ids == (2,) and spm.id_to_token(1) == "<s>"
    assert spm.token_to_id("<0xE2>") is not None and spm.token_to_id("no such") is None
    assert spm.vocabulary_size == len(spm.token_bytes) >= 256 + 5
    byte = spm.token_to_id("<0xA4>")
    assert spm.is_byte(byte) and spm.starts_inside_character(byte)
    assert not spm.starts_inside_character(spm.token_to_id("<0xF0>"))


@pytest.mark.parametrize("text", TRICKY)
def test_spm_encode_and_decode_match_sentencepiece(spm, sp_reference, text):
    ids = spm.encode(text)
    assert ids == sp_reference.encode(text)
    assert spm.decode(ids) == sp_reference.decode(ids)
    assert spm.decode_bytes(ids) == spm.decode(ids).encode("utf-8")


def test_spm_decode_matches_sentencepiece_on_random_ids(spm, sp_reference):
    """Any id sequence, including broken byte runs, <unk>, <s>, user-defined tokens."""
    rng = random.Random(3)
    n = spm.vocabulary_size
    bytes_ = [i for i in range(n) if spm.is_byte(i)]
    # Where the decoding rules differ: spaces at the start, controls, <unk>, broken UTF-8.
    tricky = [0, 1, 2, *spm.encode("🤖é x"), *(spm.token_to_id(t) for t in (
        "\u2581", "<0x20>", "<0xE2>", "<0x82>", "<start_of_turn>", "\u2581\u2581"))]
    tricky = [i for i in tricky if i is not None]
    for _ in range(4000):
        ids = [rng.choice(bytes_) if r < 0.3 else rng.choice(tricky) if r < 0.7
               else rng.randrange(n) for r in (rng.random() for _ in range(rng.randint(0, 12)))]
        assert spm.decode(ids) == sp_reference.decode(ids), ids


def test_spm_streaming_never_splits_a_character(spm):
    text = "🤖 漢字 😀😀 é 👩‍👩‍👧‍👦 ✨"
    ids = spm.encode(text)
    streamer = spm.streamer()
    pieces = [streamer.push(i) for i in ids] + [streamer.flush()]
    assert "".join(pieces) == spm.decode(ids)
    assert "".join(pieces).strip() == text
    assert all("\ufffd" not in p for p in pieces)
    assert any(p == "" for p in pieces[:-1])  # byte-fallback tokens held back
    # A run of bytes cut short by another token ends as U+FFFD, as SentencePiece decodes it.
    e2 = spm.token_to_id("<0xE2>")
    streamer = spm.streamer()
    assert streamer.push(e2) == "" and streamer.push(spm.token_to_id("<0x82>")) == ""
    assert streamer.push(2) == "\ufffd\ufffd" and streamer.flush() == ""


def test_spm_completion_keeps_its_first_space(spm):
    """Streaming a completion after its prompt gives exactly the rest of the whole decode."""
    text = "Hello world! How are you today? I'm fine, 漢字 🤖 thanks.  Tabs\tand  spaces"
    ids = spm.encode(text)
    whole = spm.decode(ids)  # the text itself, or with runs of spaces collapsed
    assert whole.split() == text.split()
    checked = 0
    for k in range(1, len(ids)):
        head = spm.decode(ids[:k])
        if not head or spm.is_byte(ids[k - 1]) or spm.is_byte(ids[k]):
            continue  # no text yet, or the cut splits a character
        streamer = spm.streamer(continuation=True)
        tail = "".join(streamer.push(i) for i in ids[k:]) + streamer.flush()
        assert head + tail == whole, k
        checked += 1
    assert checked > 10
    word = next(i for i in spm.encode(" world") if spm.id_to_token(i).startswith("\u2581w"))
    assert spm.streamer(continuation=True).push(word).startswith(" w")
    if spm.decode([word]) == spm.id_to_token(word)[1:]:  # models with a dummy prefix
        assert spm.streamer().push(word).startswith("w")


def test_spm_special_tokens_in_text(spm):
    # Control tokens are text unless allowed; user-defined ones are matched by SentencePiece
    # itself (as in KerasHub).
    assert 1 not in spm.encode("<s>hi</s>") and 2 not in spm.encode("<s>hi</s>")
    assert spm.encode("<s>hi</s>", allow_special=True) == [1] + spm.encode("hi") + [2]
    turn = spm.token_to_id("<start_of_turn>")
    assert turn in spm.encode("x<start_of_turn>user")


def test_spm_from_file(spm_proto, tmp_path):
    path = tmp_path / "vocabulary.spm"
    path.write_bytes(spm_proto)
    assert SentencePieceTokenizer.from_file(path).encode("Hello") == \
        SentencePieceTokenizer(spm_proto).encode("Hello")
    with pytest.raises(TokenizerError, match="cannot read tokenizer file"):
        SentencePieceTokenizer.from_file(tmp_path / "missing.spm")
    with pytest.raises(TokenizerError, match="not a SentencePiece model"):
        SentencePieceTokenizer(b"\x00\x01garbage")


def test_spm_refuses_a_denormalizer():
    import sentencepiece
    from sentencepiece import sentencepiece_model_pb2

    out = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(  # NFKC normalization: a real charsmap
        sentence_iterator=iter(SPM_CORPUS.splitlines()), model_writer=out, vocab_size=420,
        hard_vocab_limit=False, byte_fallback=True, character_coverage=0.98, minloglevel=2)
    model = sentencepiece_model_pb2.ModelProto.FromString(out.getvalue())
    assert model.normalizer_spec.precompiled_charsmap
    SentencePieceTokenizer(model.SerializeToString())  # a normalizer is SentencePiece's job
    model.denormalizer_spec.precompiled_charsmap = model.normalizer_spec.precompiled_charsmap
    with pytest.raises(TokenizerError, match="with a denormalizer are not supported"):
        SentencePieceTokenizer(model.SerializeToString())


def test_spm_serialisation_round_trip(spm, spm_proto):
    chat = SentencePieceTokenizer(spm_proto, SpecialTokens(start="<s>", end="</s>",
                                                           stop=("<end_of_turn>",)))
    for tok in (spm, chat):
        blob = tok.to_bytes()
        again = tokenizer_from_bytes(blob)
        assert isinstance(again, SentencePieceTokenizer) and again.proto == spm_proto
        assert again.special_tokens == tok.special_tokens
        assert again.encode(TRICKY[25]) == tok.encode(TRICKY[25])
        assert again.stop_token_ids == tok.stop_token_ids
    assert chat.stop_token_ids == (2, chat.token_to_id("<end_of_turn>"))
    assert chat.decode(chat.encode("a<end_of_turn>")) == "a"  # a named special shows nothing
    with pytest.raises(TokenizerError, match="'<nope>' is not in the vocabulary"):
        SentencePieceTokenizer(spm_proto, SpecialTokens(end="<nope>"))


@needs_convert
@pytest.mark.parametrize("tf_text", [True, False], ids=["tf-text", "python"])
def test_spm_ids_match_keras_hub(spm, spm_proto, tf_text):
    """KerasHub runs tf-text's op inside graphs and tf.data, sentencepiece in eager Python."""
    import keras_hub
    import numpy as np

    keras_tok = keras_hub.tokenizers.SentencePieceTokenizer(
        proto=spm_proto, _allow_python_workflow=not tf_text)
    assert keras_tok._use_tf_workflow() == tf_text
    for text in TRICKY:
        keras_ids = [int(i) for i in np.asarray(keras_tok(text))]
        assert spm.encode(text) == keras_ids, repr(text)
        if keras_ids:
            keras_text = np.asarray(keras_tok.detokenize(keras_ids)).item()
            if isinstance(keras_text, bytes):
                keras_text = keras_text.decode("utf-8")
            if tf_text:
                # tf-text bundles an older SentencePiece whose decoder drops every leading
                # space of a text; sentencepiece 0.2 (and pocketlm) only the dummy prefix's,
                # which round-trips " say'st". Everything after the leading spaces agrees.
                assert spm.decode(keras_ids).lstrip(" ") == keras_text.lstrip(" "), repr(text)
            else:
                assert spm.decode(keras_ids) == keras_text, repr(text)


# -- both kinds in generation ----------------------------------------------------------------
@pytest.mark.parametrize("window", range(1, 12))
def test_a_cut_prompt_starts_on_a_whole_character(gpt2, spm, window):
    """generation cuts the prompt at a token boundary, then drops orphaned continuation bytes."""
    from pocketlm.config import GenerationConfig
    from pocketlm.runtime.generation import prepare_prompt

    prompt = "words then 🤖🎉😀 漢字 and é"
    for tok in (gpt2, spm):
        prepared = prepare_prompt(tok, prompt, GenerationConfig(context_window=window), 256)
        assert prepared.ids and not tok.starts_inside_character(prepared.ids[0])
        assert "\ufffd" not in prepared.text and prompt.endswith(prepared.text.lstrip(" "))
