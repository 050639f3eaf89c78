"""The bandwidth bound `pocketlm bench` reports: weight bytes decode reads, the LiteRT
streaming probe, and the report line."""

from __future__ import annotations

import numpy as np

from pocketlm.bench import bandwidth_bounds
from pocketlm.roofline import _probe_model, decode_weight_bytes, stream_bandwidth

from .conftest import needs_convert


@needs_convert
def test_decode_reads_every_matrix_once_and_one_embedding_row(tiny_authored, tiny_models):
    c = tiny_authored.config
    d, v, layers = c.hidden_dim, c.vocabulary_size, c.num_layers
    per_layer = d * 3 * d + d * d + 2 * d * c.intermediate_dim  # qkv, out, fc, proj
    got = decode_weight_bytes(tiny_models["dynamic-int8"])
    # int8 matrices plus the LM head (the tied table); biases, norms and one embedding row
    # (float) add a little on top.
    matrices = layers * per_layer + v * d
    assert matrices <= got <= matrices + 64 * 1024
    # float32 weights read 4 bytes each.
    assert 4 * matrices <= decode_weight_bytes(tiny_models["none"]) <= 4 * matrices + 256 * 1024


def test_the_probe_is_one_int8_matrix_vector_product():
    from ai_edge_litert.interpreter import Interpreter

    rows, cols = 64, 128
    interp = Interpreter(model_content=_probe_model(rows, cols))
    interp.allocate_tensors()
    x = np.linspace(-1, 1, cols, dtype=np.float32)[None]
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    y = interp.get_tensor(interp.get_output_details()[0]["index"])
    w = np.random.default_rng(0).integers(-127, 128, rows * cols, np.int8)
    ref = (w.reshape(rows, cols).astype(np.float32) * 1e-3) @ x[0]
    np.testing.assert_allclose(y[0], ref, rtol=0.02, atol=0.02)
    assert 0.5 < stream_bandwidth(threads=1, mib=64, repeats=3) < 10_000


def test_the_report_compares_decode_speed_with_the_bound():
    report = {"machine": {"stream_bandwidth_gb_s": 50.0},
              "results": [{"model": "m.tflite", "decode_weight_mb": 1000.0,
                           "rss_file_mb": 900.0, "rss_anon_mb": 100.0,
                           "summary": {"decode_tok_s": {"median": 25.0}}},
                          {"model": "broken.tflite", "error": "exited with 1"}]}
    text = bandwidth_bounds(report)
    bound = 50e9 / (1000 * 2**20)
    assert f"the bound is {bound:.1f} tok/s" in text
    assert f"= {100 * 25 / bound:.0f}% of it" in text
    assert "900 MiB mapped from files" in text and "broken" not in text
    assert bandwidth_bounds({"machine": {}, "results": report["results"]}) == ""
    # Probes after each model: the best one is the bound.
    report["results"][0]["stream_bandwidth_gb_s"] = 40.0
    report["results"][1]["stream_bandwidth_gb_s"] = 80.0
    assert f"the bound is {80e9 / (1000 * 2**20):.1f} tok/s" in bandwidth_bounds(report)
