"""Converting in parts: a model converted part by part and stitched computes what the model
converted whole computes, in pocketlm's runtime, with the weights after the flatbuffer."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pocketlm.config import ExportConfig, GenerationConfig
from pocketlm.graph_base import Part, split_layers
from pocketlm.runtime import complete, load_model

from .conftest import TINY_PREFILL, TINY_SEQ, needs_convert

PROMPT = "To be, or not to be, that is the question"


def _export(authored, path, mode: str, parts: int):
    from pocketlm.export import export

    cfg = ExportConfig(sequence_length=TINY_SEQ, prefill_lengths=TINY_PREFILL,
                       quantization=mode, parts=parts)
    return export(authored, path, cfg, progress=lambda _m: None).path


@pytest.fixture(scope="module")
def deep_gpt2():
    """A tiny random GPT-2 with 3 layers, so a middle part exists."""
    from pocketlm.authoring import random_causal_lm
    from pocketlm.config import ModelConfig

    return random_causal_lm(ModelConfig(vocabulary_size=50257, num_layers=3, num_heads=2,
                                        hidden_dim=32, intermediate_dim=64,
                                        max_sequence_length=128, dropout=0.0),
                            sequence_length=TINY_SEQ, seed=1)


@needs_convert
@pytest.mark.parametrize("mode", ["none", "dynamic-int8", "int4"])
def test_stitched_model_equals_whole_model(deep_gpt2, tmp_path, mode):
    whole = load_model(_export(deep_gpt2, tmp_path / "whole.tflite", mode, 1))
    ids = whole.tokenizer.encode(PROMPT)
    for parts in (2, 3):
        stitched = load_model(_export(deep_gpt2, tmp_path / f"p{parts}.tflite", mode, parts))
        assert stitched.info.notes["parts"] == parts
        assert "hidden_states" not in str(stitched.info.to_dict())
        # Same weights, same ops, one part after another: the same numbers.
        np.testing.assert_allclose(stitched.score(ids), whole.score(ids), atol=1e-5, rtol=0)
        np.testing.assert_allclose(stitched.start(ids[:7]), whole.start(ids[:7]), atol=1e-5,
                                   rtol=0)
        gen = GenerationConfig(max_new_tokens=16, stop_at_end_token=False)
        assert (complete(stitched, PROMPT, gen).token_ids
                == complete(whole, PROMPT, gen).token_ids)


@needs_convert
def test_stitched_file_keeps_weights_after_the_flatbuffer(deep_gpt2, tmp_path):
    from ai_edge_litert import schema_py_generated as fb

    path = _export(deep_gpt2, tmp_path / "p2.tflite", "dynamic-int8", 2)
    data = path.read_bytes()
    model = fb.Model.GetRootAs(data, 0)
    external = [model.Buffers(i) for i in range(model.BuffersLength())
                if model.Buffers(i).Offset() > 1]
    assert external, "no buffer is stored after the flatbuffer"
    for buf in external:
        assert buf.Offset() % 64 == 0 and buf.Offset() + buf.Size() <= len(data)
    # Signatures as a whole-model file has them, without the parts' hidden states.
    names = {model.SignatureDefs(i).SignatureKey().decode()
             for i in range(model.SignatureDefsLength())}
    assert names == {"decode", "prefill", "prefill_4", "score"}


@needs_convert
def test_calibrated_modes_and_whole_only_families_are_refused_in_parts(deep_gpt2, tmp_path):
    from pocketlm.errors import ConversionError

    with pytest.raises(ConversionError, match="calibrates"):
        _export(deep_gpt2, tmp_path / "x.tflite", "full-int8", 2)
    with pytest.raises(ConversionError, match="only 3 layers"):
        _export(deep_gpt2, tmp_path / "y.tflite", "none", 4)
    assert not list(tmp_path.iterdir()), "a refused conversion left files behind"


def _fake(layers: int, embedding: int, per_layer: int):
    backbone = SimpleNamespace(
        num_layers=layers, count_params=lambda: embedding + layers * per_layer,
        token_embedding=SimpleNamespace(count_params=lambda: embedding))
    return SimpleNamespace(backbone=backbone)


@pytest.mark.parametrize("layers, embedding, per_layer", [
    (28, 151_936 * 1536, 46_797_824),  # the Qwen 2.5 1.5B shape
    (18, 256_000 * 2048, 110_112_768),  # the Gemma 2B shape
    (12, 50_257 * 768, 7_087_872),  # GPT-2 small: one part
])
def test_planned_parts_cover_every_layer_and_fit_the_budget(layers, embedding, per_layer):
    from pocketlm.export_parts import MAX_PART_BYTES, part_weights, plan_parts

    fake = _fake(layers, embedding, per_layer)
    parts = plan_parts(fake, ExportConfig(quantization="dynamic-int8"))
    assert parts[0].first == 0 and parts[-1].last == layers
    assert all(a.last == b.first for a, b in zip(parts, parts[1:]))
    if (embedding + layers * per_layer) * 4 <= 1_600_000_000:
        assert parts == [Part.whole(layers)]
    else:
        assert len(parts) > 1
        # Within the budget, unless one layer and the embedding table alone exceed it.
        assert all(part_weights(fake, p) * 4 <= MAX_PART_BYTES or p.last - p.first == 1
                   for p in parts)
        # Not needlessly many: no two neighbouring middle parts would fit in one.
        middle = parts[1:-1]
        assert all((part_weights(fake, a) + part_weights(fake, b)) * 4 > MAX_PART_BYTES
                   for a, b in zip(middle, middle[1:]))


def test_split_layers_is_even_and_contiguous():
    parts = split_layers(28, 5)
    assert [p.last - p.first for p in parts] == [6, 5, 6, 5, 6]
    assert parts[0].has_embedding and parts[-1].has_head
    assert not parts[1].has_embedding and not parts[1].has_head
    with pytest.raises(ValueError):
        Part(3, 3, 4)


@needs_convert
def test_parts_that_do_not_chain_are_refused(deep_gpt2, tmp_path):
    from pocketlm.errors import ConversionError
    from pocketlm.stitch import stitch

    whole = _export(deep_gpt2, tmp_path / "whole.tflite", "none", 1)
    out = tmp_path / "joined.tflite"
    # Two whole models: the second takes tokens, not the first one's hidden states.
    with pytest.raises(ConversionError, match="hidden_states"):
        stitch([whole, whole], out, {})
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["whole.tflite"]


@needs_convert
def test_cli_converts_in_parts_with_its_needs_and_time_left(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "q.tflite"
    proc = subprocess.run([sys.executable, "-m", "pocketlm.cli", "convert", "--random", "tiny",
                           "--family", "qwen", "--parts", "2", "-q", "int4", "-o", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    err = proc.stderr
    assert "in 2 parts: about" in err and "GiB of memory" in err and "GiB of disk" in err
    assert "part 1/2 done" in err and "left" in err and "stitching 2 parts" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.tflite"]  # no part files left
    model = load_model(out)
    assert model.info.notes["parts"] == 2 and model.info.quantization == "int4"
    gen = GenerationConfig(max_new_tokens=8, stop_at_end_token=False)
    assert len(complete(model, PROMPT, gen).token_ids) == 8
