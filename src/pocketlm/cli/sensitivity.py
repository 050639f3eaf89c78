"""``pocketlm sensitivity``: which layers full-integer int8 hurts, before you ship full-int8."""

from __future__ import annotations

import json
import sys

from ..paths import check_input_file, check_output_file
from .args import add_command, integer


def add_sensitivity(sub) -> None:
    p = add_command(sub, "sensitivity", cmd_sensitivity,
                    help="per-layer int8 error of a model (what full-int8 breaks, what "
                         "full-int8-mixed keeps float)",
                    description="Calibrate full-int8 on a text, run the float and int8 decode "
                                "step side by side (TensorFlow's QuantizationDebugger) and "
                                "rank the layers by their error in int8 steps (rmse / scale). "
                                "Layers above 0.7 stay float in -q full-int8-mixed.")
    p.add_argument("--preset", help="a preset name or directory (default: the embedded model)")
    p.add_argument("--calibration-text", help="text file to calibrate on (default: a "
                                              "built-in sample)")
    p.add_argument("--calibration-samples", type=integer(1, 100_000), default=32,
                   help="windows of the calibration text")
    p.add_argument("--top", type=integer(1, 100_000), default=30, help="layers to list")
    p.add_argument("--json", metavar="FILE", help="write every layer's figures as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown")


def cmd_sensitivity(args) -> int:
    from ..presets import DEFAULT_PRESET, check_preset
    from ..textdata import read_text

    preset = args.preset or DEFAULT_PRESET
    check_preset(preset)
    for out in (args.json, args.markdown):
        if out:
            check_output_file(out)
    if args.calibration_text:
        check_input_file(args.calibration_text)
    print("loading the conversion stack (TensorFlow, KerasHub)...", file=sys.stderr, flush=True)
    from ..authoring import load_causal_lm
    from ..config import ExportConfig
    from ..export import (_calibration_samples, build_module, layer_sensitivity,
                          signature_functions)
    from ..sensitivity import float_nodes, report_markdown

    authored = load_causal_lm(preset)
    cfg = ExportConfig(quantization="full-int8", calibration_samples=args.calibration_samples,
                       calibration_text=(read_text(args.calibration_text)
                                         if args.calibration_text else None))
    module = build_module(authored, cfg.sequence_length, cfg.quantization)
    funcs = signature_functions(module, cfg)
    print(f"calibrating on {cfg.calibration_samples} samples, then measuring every layer",
          file=sys.stderr, flush=True)
    samples = _calibration_samples(module, authored, cfg, funcs)
    errors = layer_sensitivity(module, funcs, cfg, samples)
    kept = float_nodes(errors)
    table = report_markdown(errors, kept, args.top)
    print(table, end="")
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(f"# Per-layer int8 sensitivity: {preset}\n\n{table}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"preset": preset, "kept_float": list(kept),
                       "layers": [e.to_dict() for e in errors]}, f, indent=1)
    return 0
