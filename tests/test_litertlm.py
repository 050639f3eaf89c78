"""One file for both engines: tiny models bundled as ``.litertlm`` run in Google's LiteRT-LM
and in pocketlm's engine, and both give Keras ``generate``'s greedy tokens.

A tiny GPT-2 (byte-level BPE, HF ``tokenizer.json`` in the bundle, hand-written graph) and a
tiny Llama (RoPE, SentencePiece, KerasHub's ``call_with_cache``) are converted with contract
v2 and bundled with ``litert-lm-builder``. pocketlm's engine must give exactly the token ids
of KerasHub's greedy ``generate`` (start token as KerasHub packs it); LiteRT-LM, whose Python
API returns text, must print exactly the text of those ids up to the first stop token.
"""

from __future__ import annotations

import importlib.util

import pytest

from pocketlm.config import GenerationConfig

from .conftest import needs_convert
from .test_families import PREFILL, PROMPT, SEQ, _keras_greedy

pytestmark = needs_convert
needs_litert_lm = pytest.mark.skipif(importlib.util.find_spec("litert_lm") is None,
                                     reason="needs LiteRT-LM: pip install .[litert-lm]")
FAMILIES = ("gpt2", "llama")
NEW = 16


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """family -> (authored model, .tflite, .litertlm)."""
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.litertlm import write_bundle
    from pocketlm.runtime.loader import inspect_model
    from pocketlm.tiny import tiny_causal_lm

    out = tmp_path_factory.mktemp("litertlm")
    built = {}
    for family in FAMILIES:
        authored = tiny_causal_lm(family, sequence_length=SEQ, seed=0)
        cfg = ExportConfig(sequence_length=SEQ, prefill_lengths=PREFILL, quantization="none")
        tflite = export(authored, out / f"{family}.tflite", cfg, progress=lambda _m: None).path
        bundle = out / f"{family}.litertlm"
        write_bundle(tflite, inspect_model(tflite).contract, authored.tokenizer, bundle)
        built[family] = (authored, tflite, bundle)
    return built


def _until_stop(ids: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i]
    return ids


@pytest.mark.parametrize("family", FAMILIES)
def test_pocketlm_engine_runs_the_bundle_like_keras_generate(bundles, family):
    from pocketlm.runtime import complete, load_model

    authored, tflite, bundle = bundles[family]
    want, prompt_ids = _keras_greedy(authored, PROMPT, NEW)
    for path in (tflite, bundle):
        model = load_model(path, num_threads=1)
        done = complete(model, PROMPT, GenerationConfig(max_new_tokens=NEW,
                                                        stop_at_end_token=False))
        assert done.prompt.fed_ids == prompt_ids
        assert done.token_ids == want, path


@needs_litert_lm
@pytest.mark.parametrize("family", FAMILIES)
def test_litert_lm_runs_the_bundle_like_keras_generate(bundles, family, tmp_path):
    from pocketlm.runtime.litert_lm_engine import LiteRTLMEngine

    authored, _, bundle = bundles[family]
    want, _ = _keras_greedy(authored, PROMPT, NEW)
    stops = set(authored.stop_token_ids) | {authored.end_token_id}
    expected = authored.tokenizer.decode(_until_stop(want, stops))
    with LiteRTLMEngine(bundle, num_threads=1) as engine:
        got = engine.generate(PROMPT, NEW)
        assert len(expected) >= 8  # a real continuation, not an immediate stop
        assert got == expected
        assert engine.generate(PROMPT, NEW) == expected  # a second session starts afresh
    # Its XNNPACK cache went into pocketlm's cache folder, not beside the model.
    assert sorted(p.name for p in bundle.parent.iterdir()) == sorted(
        f"{f}.{ext}" for f in FAMILIES for ext in ("tflite", "litertlm"))


def test_bundle_tokenizer_matches_pocketlm_ids(bundles):
    """The HF tokenizer.json written into BPE bundles gives pocketlm's ids (SentencePiece
    bundles carry the proto itself)."""
    from tokenizers import Tokenizer

    from pocketlm.litertlm import hf_tokenizer_json

    authored = bundles["gpt2"][0]
    hf = Tokenizer.from_str(hf_tokenizer_json(authored.tokenizer))
    for text in (PROMPT, "  two  spaces\nand a line's end", "x" * 50, "Hello, world! 123"):
        ids = authored.tokenizer.encode(text)
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=True) == authored.tokenizer.decode(ids)
