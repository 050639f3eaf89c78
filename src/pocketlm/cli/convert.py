"""``pocketlm convert`` and ``pocketlm demo``: the commands that need the conversion stack.
Every argument is checked before TensorFlow is imported (that takes seconds)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ..errors import UsageError
from ..paths import check_input_file, check_output_file
from ..shapes import SHAPES
from .args import (QUANTIZATION_HELP, SEED_MAX, Stdout, add_command, add_generation_options,
                   integer, integers, quantization)

RANDOM_CONFIGS = ("tiny", "gpt2-small", *SHAPES)


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def add_convert(sub) -> None:
    p = add_command(sub, "convert", cmd_convert,
                    help="author a KerasHub causal LM and convert it to .tflite",
                    description="Build a KerasHub causal LM (any family `pocketlm families` "
                                "lists) and convert it to one KV-cache .tflite with "
                                "prefill/decode signatures (or, with --format android, the "
                                "recipe's string-in, string-out GPT-2 model).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="embedded preset name, KerasHub preset name (needs "
                                      "network), or a local preset directory (default: the "
                                      "embedded model)")
    src.add_argument("--random", metavar="CONFIG",
                     help=f"random weights: {' | '.join(RANDOM_CONFIGS)} | a config .json "
                          "(GPT-2's ModelConfig keys, or {\"family\": NAME, ...the family's "
                          "KerasHub backbone arguments}; unknown or missing keys are errors)")
    p.add_argument("--family", help="with --random tiny: the family of the tiny model, its "
                                    "tokenizer trained on a built-in text (default: gpt2, "
                                    "with the real GPT-2 tokenizer); see `pocketlm families`")
    p.add_argument("--seed", type=integer(0, SEED_MAX), default=0,
                   help=f"seed for --random weights, 0..{SEED_MAX}")
    p.add_argument("--parts", type=integer(0, 4096), default=0,
                   help="convert in this many parts of consecutive layers, stitched into one "
                        "file (0: automatic, parts only when the model is too big for one "
                        "conversion; hand-written-graph families only)")
    p.add_argument("-q", "--quantize", type=quantization, default="dynamic-int8",
                   metavar="MODE", help=QUANTIZATION_HELP)
    p.add_argument("--sequence-length", type=integer(2, 65536), default=None,
                   help="cache length: most tokens per sequence (prompt and completion); "
                        "default 256, or the model's learned positions if fewer")
    p.add_argument("--prefill-lengths", type=integers(1), default="64,16",
                   help="token counts of the prefill signatures, comma-separated, each at "
                        "most --sequence-length")
    p.add_argument("--calibration-text", help="text file for full-int8 calibration "
                                              "(default: a built-in sample)")
    p.add_argument("--calibration-samples", type=integer(1, 100_000), default=32,
                   help="windows of the calibration text used for full-int8")
    p.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    p.add_argument("--format", choices=["kv-cache", "litertlm", "android"], default="kv-cache",
                   help="kv-cache: prefill/decode signatures, builtin ops only (LiteRT-LM's "
                        "contract); litertlm: the same model with its tokenizer and "
                        "LlmMetadata in one .litertlm bundle for LiteRT-LM; android: the "
                        "recipe's string-in, string-out model, tokenizer and decode loop in "
                        "the graph, Select-TF ops (see docs/formats.md)")
    p.add_argument("--max-length", type=integer(2, 65536), default=100,
                   help="android format: most tokens (start token, prompt, continuation), "
                        "frozen into the file (as in the recipe)")


def random_config(spec: str, family: str | None = None):
    """What --random (and --family) name: a GPT-2 ModelConfig, or a dict ``{"family": name,
    ...backbone arguments}`` (``tiny`` alone for a family's tiny config). Raises UsageError.
    The backbone arguments are checked against KerasHub's once it is loaded."""
    from ..config import ModelConfig
    from ..errors import UnsupportedModelError
    from ..families import get_family

    try:
        fam = get_family(family) if family else None
    except UnsupportedModelError as exc:
        raise UsageError(str(exc)) from None
    if fam is not None and fam.name != "gpt2":
        if spec != "tiny":
            raise UsageError(f"--family goes with --random tiny; a config .json names its "
                             f"family itself ({{\"family\": \"{fam.name}\", ...}})")
        return {"family": fam.name, **fam.tiny}
    if spec == "tiny":
        return ModelConfig.tiny()
    if spec == "gpt2-small":
        return ModelConfig()
    if spec in SHAPES:
        return dict(SHAPES[spec])
    path = Path(spec)
    if not path.is_file():
        raise UsageError(f"--random takes {', '.join(RANDOM_CONFIGS)} or a .json file; "
                         f"{spec} is neither")
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and "family" in data:
            get_family(str(data["family"]))
            return data
        return ModelConfig.from_dict(data)
    except (ValueError, TypeError, AttributeError, OSError, UnsupportedModelError) as exc:
        raise UsageError(f"bad model config {path}: {exc}") from None


def _positions(config) -> int | None:
    """The learned positions of a --random config (None: rotary, no fixed limit)."""
    if not isinstance(config, dict):
        return config.max_sequence_length
    for key in ("max_sequence_length", "max_position_embeddings"):
        if isinstance(config.get(key), int):
            return config[key]
    return None


def cmd_convert(args) -> int:
    from ..config import ExportConfig
    from ..config import DEFAULT_SEQUENCE_LENGTH
    from ..presets import DEFAULT_PRESET, check_positions, preset_positions
    from ..textdata import read_text

    check_output_file(args.output)
    if args.family and not args.random:
        raise UsageError("--family goes with --random (a preset knows its family)")
    config = random_config(args.random, args.family) if args.random else None
    if args.sequence_length is None:
        # Not given: 256, or fewer for a model with fewer learned positions.
        positions = (_positions(config) if config is not None else
                     preset_positions(args.preset or DEFAULT_PRESET))
        args.sequence_length = min(DEFAULT_SEQUENCE_LENGTH, positions or DEFAULT_SEQUENCE_LENGTH)
    # Tokens past the position embeddings would make a model that writes garbage.
    lengths = [(args.sequence_length, "--sequence-length")]
    if args.format == "android":
        lengths.append((args.max_length, "--max-length"))
    for length, option in lengths:
        if config is None:
            check_positions(args.preset or DEFAULT_PRESET, length, option)
        elif (positions := _positions(config)) is not None and length > positions:
            raise UsageError(f"{option} {length} is more than the {positions} positions of "
                             f"--random {args.random} (its max_sequence_length)")
    if args.calibration_text:
        check_input_file(args.calibration_text)
    if args.format == "litertlm":
        from ..litertlm import require_builder
        require_builder()
    try:
        cfg = ExportConfig(sequence_length=args.sequence_length,
                           prefill_lengths=args.prefill_lengths, quantization=args.quantize,
                           calibration_samples=args.calibration_samples, parts=args.parts,
                           calibration_text=(read_text(args.calibration_text)
                                             if args.calibration_text else None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    progress("loading the conversion stack (TensorFlow, KerasHub)...")
    # TensorFlow's oneDNN CPU allocator never returns memory to the system: a 1.5B model's
    # Keras weights, dropped once they are on disk for a conversion in parts, would keep
    # their 6-10 GB (measured: 3.55 GB stayed resident after release with it, 0.78 GB
    # without). Conversion does not need oneDNN's kernels. Set before TensorFlow loads.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    from ..authoring import load_causal_lm, random_causal_lm
    from ..export import export

    if isinstance(config, dict):
        from ..tiny import tiny_causal_lm, tiny_keras_tokenizer
        from ..families import get_family
        fam = get_family(config["family"])
        if args.random == "tiny":
            authored = tiny_causal_lm(fam, args.sequence_length, args.seed)
        elif args.random in SHAPES:  # a published shape: its vocabulary, a tiny tokenizer
            authored = random_causal_lm(config, args.sequence_length, args.seed,
                                        tiny_keras_tokenizer(fam))
        else:
            # Offline there is no real tokenizer to load: one is trained on a built-in text
            # with the config's vocabulary size (the config's vocabulary_size must fit it).
            ktok = tiny_keras_tokenizer(fam, int(config.get("vocabulary_size", 400)))
            authored = random_causal_lm(config, args.sequence_length, args.seed, ktok)
    elif config is not None:
        authored = random_causal_lm(config, args.sequence_length, args.seed)
    else:
        authored = load_causal_lm(args.preset or DEFAULT_PRESET, args.sequence_length)
    if args.format == "android":
        from ..export_android import export_android
        result = export_android(authored, args.output, args.max_length, args.quantize,
                                progress=progress)
    elif args.format == "litertlm":
        from ..litertlm import export_bundle
        result = export_bundle(authored, args.output, cfg, progress=progress)
    else:
        # The CLI converts once and exits: a model converted in parts may drop its Keras
        # copy (6 GB for 1.5B weights) once the weights are on disk.
        result = export(authored, args.output, cfg, progress=progress, release_model=True)
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB, {args.quantize.value}, "
          f"signatures {', '.join(result.signatures)}) in {result.seconds:.1f}s")
    return 0


def add_demo(sub) -> None:
    p = add_command(sub, "demo", cmd_demo,
                    help="the main job: convert the embedded model (once) and complete a "
                         "prompt, with size and speed",
                    description="Convert the embedded model (cached after the first run), "
                                "complete a prompt and print the model's size and speed.")
    p.add_argument("prompt", nargs="?", default="I'm enjoying a", help="the text to complete")
    p.add_argument("--preset", help="a preset name or directory (default: the embedded model)")
    p.add_argument("-q", "--quantize", type=quantization, default="dynamic-int8",
                   metavar="MODE", help=QUANTIZATION_HELP)
    # Sampled by default (seeded, so the output is the same every run): greedy text from a
    # small model loops on one line, which shows the model worse than it is.
    add_generation_options(p, max_new_tokens=60, temperature=0.8, top_k=40, seed=0)


def cmd_demo(args) -> int:
    from ..config import GenerationConfig
    from ..demo import run_demo
    from ..presets import DEFAULT_PRESET, check_preset

    check_preset(args.preset or DEFAULT_PRESET)
    try:
        gen = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    started = []

    def show(piece: str) -> None:
        if not started:
            started.append(True)
            print("\n--- completion " + "-" * 50, flush=True)
            Stdout.write(args.prompt)
        Stdout.write(piece)

    r = run_demo(args.prompt, gen, args.preset or DEFAULT_PRESET, args.quantize,
                 progress=progress, on_piece=show)
    Stdout.write("\n" + "-" * 65 + "\n")
    print(f"model:  {r.model_path} ({r.size_bytes / 2**20:.1f} MiB"
          f"{', converted now' if r.converted else ', cached'})")
    print(f"speed:  load {r.load_seconds * 1000:.0f} ms, first token "
          f"{r.time_to_first_token * 1000:.0f} ms, {r.tokens_per_second:.1f} tokens/s "
          f"({r.tokens} new tokens)")
    return 0
