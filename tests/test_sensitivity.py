"""The per-layer int8 sensitivity report and the full-int8-mixed mode built on it."""

from __future__ import annotations

import json

from pocketlm.config import GenerationConfig

from .conftest import needs_convert
from .test_cli import run_cli

pytestmark = needs_convert


def test_layers_are_ranked_and_the_worst_stay_float_in_the_mixed_mode(tmp_path):
    from pocketlm.config import ExportConfig
    from pocketlm.export import (_calibration_samples, build_module, export, layer_sensitivity,
                                 signature_functions)
    from pocketlm.runtime import complete, load_model
    from pocketlm.sensitivity import SUSPECT_RMSE_OVER_SCALE, float_nodes
    from pocketlm.tiny import tiny_causal_lm

    authored = tiny_causal_lm("llama", 64)
    cfg = ExportConfig(sequence_length=64, prefill_lengths=(16, 4), quantization="full-int8",
                       calibration_samples=8)
    module = build_module(authored, 64, cfg.quantization)
    funcs = signature_functions(module, cfg)
    errors = layer_sensitivity(module, funcs, cfg, _calibration_samples(module, authored, cfg,
                                                                         funcs))
    assert errors and all(a.rmse_over_scale >= b.rmse_over_scale
                          for a, b in zip(errors, errors[1:]))
    assert {"FULLY_CONNECTED", "BATCH_MATMUL"} <= {e.op for e in errors}
    kept = float_nodes(errors)
    assert kept == tuple(e.tensor for e in errors if e.rmse_over_scale > SUSPECT_RMSE_OVER_SCALE)

    paths = {}
    for mode in ("full-int8", "full-int8-mixed"):
        mcfg = ExportConfig(sequence_length=64, prefill_lengths=(16, 4), quantization=mode,
                            calibration_samples=8)
        paths[mode] = export(authored, tmp_path / f"{mode}.tflite", mcfg,
                             progress=lambda _m: None).path
    model = load_model(paths["full-int8-mixed"])
    done = complete(model, "Once upon a time", GenerationConfig(max_new_tokens=6,
                                                                  stop_at_end_token=False))
    assert len(done.token_ids) == 6
    assert model.info.quantization == "full-int8-mixed"
    info = {m: json.loads(run_cli("info", str(p), "--json").stdout) for m, p in paths.items()}
    floats = {m: sum(i["float_ops"].values()) for m, i in info.items()}
    if kept:  # the kept layers run in float: more float ops than plain full-int8
        assert floats["full-int8-mixed"] > floats["full-int8"]


def test_the_sensitivity_command_writes_a_table_and_json(tmp_path):
    out = tmp_path / "layers.json"
    md = tmp_path / "layers.md"
    proc = run_cli("sensitivity", "--calibration-samples", "4", "--top", "5", "--json",
                   str(out), "--markdown", str(md))
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.decode()
    assert table.startswith("| rank | op |") and table.count("\n| ") == 5  # 5 rows
    data = json.loads(out.read_text())
    assert data["preset"] == "pocketlm_gpt2_shakespeare" and len(data["layers"]) > 5
    assert md.read_text().startswith("# Per-layer int8 sensitivity")
