"""The ``pocketlm`` command. Thin commands; heavy imports happen inside them, so ``--help``
is instant and ``generate``/``info`` never touch TensorFlow."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import PocketLMError

RANDOM_CONFIGS = ("tiny", "gpt2-small")


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- convert -------------------------------------------------------------------------------
def _add_convert(sub) -> None:
    p = sub.add_parser("convert", help="author a KerasHub GPT-2 and convert it to .tflite",
                       description="Build a KerasHub GPT-2 causal LM and convert it to one "
                                   "KV-cache .tflite with prefill/decode signatures (or, with "
                                   "--format android, the recipe's string-in, string-out "
                                   "model).")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", help="embedded preset name, KerasHub preset name (needs "
                                      "network), or a local preset directory "
                                      "(default: the embedded model)")
    src.add_argument("--random", metavar="CONFIG",
                     help=f"random weights: {' | '.join(RANDOM_CONFIGS)} | a ModelConfig .json")
    p.add_argument("--seed", type=int, default=0, help="seed for --random weights")
    p.add_argument("-q", "--quantize", default="dynamic-int8",
                   help="none | dynamic-int8 | float16 | full-int8 (default dynamic-int8)")
    p.add_argument("--sequence-length", type=int, default=256,
                   help="cache length: most tokens per sequence (default 256)")
    p.add_argument("--prefill-lengths", default="64,16",
                   help="token counts of the prefill signatures (default 64,16)")
    p.add_argument("--calibration-text", help="text file for full-int8 calibration "
                                              "(default: a built-in sample)")
    p.add_argument("--calibration-samples", type=int, default=32)
    p.add_argument("-o", "--output", required=True, help="the .tflite file to write")
    p.add_argument("--format", choices=["kv-cache", "android"], default="kv-cache",
                   help="kv-cache: prefill/decode signatures, builtin ops only (default); "
                        "android: the recipe's string-in, string-out model, tokenizer and "
                        "decode loop in the graph, Select-TF ops (see docs/formats.md)")
    p.add_argument("--max-length", type=int, default=100,
                   help="android format: most tokens (start token, prompt, continuation), "
                        "frozen into the file (default 100, as in the recipe)")
    p.set_defaults(func=cmd_convert)


def _random_config(spec: str):
    from .config import ModelConfig
    if spec == "tiny":
        return ModelConfig.tiny()
    if spec == "gpt2-small":
        return ModelConfig()
    path = Path(spec)
    if not path.is_file():
        raise PocketLMError(f"--random takes {' or '.join(RANDOM_CONFIGS)} or a .json file; "
                            f"{spec} is neither")
    try:
        return ModelConfig.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError) as exc:
        raise PocketLMError(f"bad model config {path}: {exc}") from None


def cmd_convert(args) -> int:
    from .config import ExportConfig, Quantization
    from .textdata import read_text

    try:
        quant = Quantization.parse(args.quantize)
        lengths = tuple(int(x) for x in args.prefill_lengths.split(",") if x.strip())
        cfg = ExportConfig(sequence_length=args.sequence_length, prefill_lengths=lengths,
                           quantization=quant, calibration_samples=args.calibration_samples,
                           calibration_text=(read_text(args.calibration_text)
                                             if args.calibration_text else None))
    except ValueError as exc:
        raise PocketLMError(str(exc)) from None
    _progress("loading the conversion stack (TensorFlow, KerasHub)...")
    from .authoring import load_causal_lm, random_causal_lm
    from .export import export
    from .presets import DEFAULT_PRESET

    if args.random:
        authored = random_causal_lm(_random_config(args.random), args.sequence_length, args.seed)
    else:
        authored = load_causal_lm(args.preset or DEFAULT_PRESET, args.sequence_length)
    if args.format == "android":
        from .export_android import export_android
        result = export_android(authored, args.output, args.max_length, quant,
                                progress=_progress)
    else:
        result = export(authored, args.output, cfg, progress=_progress)
    print(f"wrote {result.path} ({result.size_bytes / 2**20:.1f} MiB, {quant.value}, "
          f"signatures {', '.join(result.signatures)}) in {result.seconds:.1f}s")
    return 0


# -- generate ------------------------------------------------------------------------------
def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="complete a prompt with a .tflite model (streams)",
                       description="Complete PROMPT with MODEL, streaming text to stdout. "
                                   "Needs only ai-edge-litert and numpy, not TensorFlow.")
    p.add_argument("model", help="a .tflite language model")
    p.add_argument("prompt", help="the text to complete ('-' reads standard input)")
    p.add_argument("-n", "--max-new-tokens", type=int, default=100)
    p.add_argument("-t", "--temperature", type=float, default=0.0, help="0 = greedy (default)")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int)
    p.add_argument("--context-window", type=int, help="keep only the last N units of the prompt")
    p.add_argument("--context-unit", choices=["tokens", "words"], default="tokens")
    p.add_argument("--tokenizer", help="for models that carry none: gpt2, a KerasHub preset "
                                       "directory, or VOCAB.json,MERGES.txt")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-prompt", action="store_true", help="print only the completion")
    p.add_argument("--stats", action="store_true", help="print timings to stderr")
    p.add_argument("--trust", action="store_true",
                   help="skip the first-use check that loads the file in a child process "
                        "(so a corrupt file cannot crash this one)")
    p.set_defaults(func=cmd_generate)


def _read_prompt(arg: str) -> bytes:
    if arg == "-":
        return sys.stdin.buffer.read()
    # argv arrives decoded with surrogateescape: recover the raw bytes to validate them.
    return os.fsencode(arg)


def cmd_generate(args) -> int:
    from .config import GenerationConfig
    from .runtime import load_model, stream
    from .runtime.generation import Completion, PreparedPrompt

    try:
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                               context_window=args.context_window,
                               context_unit=args.context_unit)
    except ValueError as exc:
        raise PocketLMError(str(exc)) from None
    prompt = _read_prompt(args.prompt)
    if not args.trust:
        from .runtime.guard import verify_in_child
        verify_in_child(args.model, tokenizer=args.tokenizer)  # a crash stays in the child
    model = load_model(args.model, tokenizer=args.tokenizer, num_threads=args.threads)
    sampling = cfg.temperature or cfg.top_k or cfg.top_p < 1
    if sampling and getattr(model, "fixed_sampling", False):
        _progress("note: this model picks its tokens inside its graph (greedy); "
                  "--temperature, --top-k and --top-p do not apply")
    done = Completion(PreparedPrompt("", [], False))
    out = sys.stdout
    pieces = stream(model, prompt, cfg, done)
    first = next(pieces, None)  # prompt errors surface before anything is printed
    if not args.no_prompt:
        out.write(done.prompt.text)
    for piece in ([first] if first is not None else []):
        out.write(piece)
        out.flush()
    for piece in pieces:
        out.write(piece)
        out.flush()
    out.write("\n")
    out.flush()
    if args.stats or done.prompt.truncated:
        if done.prompt.truncated:
            _progress(f"note: the prompt was cut to its last {len(done.prompt.ids)} tokens "
                      "to fit the model's window")
        if args.stats and getattr(model, "fixed_sampling", False):
            _progress(f"{len(done.prompt.ids)} prompt tokens, {len(done.token_ids)} new tokens; "
                      f"the graph ran the whole generation in "
                      f"{done.time_to_first_token * 1000:.0f} ms")
        elif args.stats:
            _progress(f"{len(done.prompt.ids)} prompt tokens, {len(done.token_ids)} new tokens "
                      f"({done.stop_reason}); first token {done.time_to_first_token * 1000:.0f} "
                      f"ms, {done.tokens_per_second:.1f} tokens/s")
    return 0


# -- demo ----------------------------------------------------------------------------------
def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: convert the embedded model (once) and "
                                    "complete a prompt, with size and speed",
                       description="Convert the embedded model (cached after the first run), "
                                   "complete a prompt and print the model's size and speed.")
    p.add_argument("prompt", nargs="?", default="I'm enjoying a")
    p.add_argument("--preset", help="a preset name or directory (default: the embedded model)")
    p.add_argument("-q", "--quantize", default="dynamic-int8")
    p.add_argument("-n", "--max-new-tokens", type=int, default=60)
    # Sampled by default (seeded, so the output is the same every run): greedy text from a
    # small model loops on one line, which shows the model worse than it is.
    p.add_argument("-t", "--temperature", type=float, default=0.8, help="0 = greedy")
    p.add_argument("--top-k", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> int:
    from .config import GenerationConfig
    from .demo import run_demo
    from .presets import DEFAULT_PRESET

    try:
        gen = GenerationConfig(max_new_tokens=args.max_new_tokens,
                               temperature=args.temperature, top_k=args.top_k, seed=args.seed)
    except ValueError as exc:
        raise PocketLMError(str(exc)) from None
    started = []

    def show(piece: str) -> None:
        if not started:
            started.append(True)
            print("\n--- completion " + "-" * 50, flush=True)
            sys.stdout.write(args.prompt)
        sys.stdout.write(piece)
        sys.stdout.flush()

    r = run_demo(args.prompt, gen, args.preset or DEFAULT_PRESET, args.quantize,
                 progress=_progress, on_piece=show)
    print("\n" + "-" * 65)
    print(f"model:  {r.model_path} ({r.size_bytes / 2**20:.1f} MiB"
          f"{', converted now' if r.converted else ', cached'})")
    print(f"speed:  load {r.load_seconds * 1000:.0f} ms, first token "
          f"{r.time_to_first_token * 1000:.0f} ms, {r.tokens_per_second:.1f} tokens/s "
          f"({r.tokens} new tokens)")
    return 0


# -- bench ---------------------------------------------------------------------------------
def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="measure size, load time, first-token time, decode speed "
                                     "and peak memory of .tflite models",
                       description="Benchmark .tflite models on the standard workload (10-token "
                                   "prompt, 100 greedy new tokens, end token ignored), each in "
                                   "its own process; medians over several runs after a warm-up.")
    p.add_argument("models", nargs="*", help=".tflite files")
    p.add_argument("--build-standard", metavar="DIR",
                   help="first build the standard-workload model (GPT-2 small shape, random "
                        "weights, seed 0) in each of --modes into DIR, and benchmark those")
    p.add_argument("--modes", default="none,dynamic-int8,float16",
                   help="quantization modes for --build-standard")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown")
    p.add_argument("--peers", metavar="JSONL", help="peer results from ../shared/peers (one "
                                                    "JSON line each) to compare against")
    p.add_argument("--chart", metavar="PNG", help="bar chart of decode speed (needs matplotlib)")
    p.set_defaults(func=cmd_bench)


def cmd_bench(args) -> int:
    from .bench import BenchConfig, bench, to_markdown

    models = list(args.models)
    if args.build_standard:
        models += _build_standard(Path(args.build_standard), args.modes.split(","))
    if not models:
        raise PocketLMError("give .tflite files to benchmark, or --build-standard DIR")
    for m in models:
        if not Path(m).is_file():
            raise PocketLMError(f"model file not found: {m}")

    def progress(path: str, n: int, total: int, done: int, runs: int) -> None:
        width = 20
        filled = int(width * done / runs)
        print(f"\r[{n}/{total}] {Path(path).name:<36} [{'#' * filled}{'.' * (width - filled)}]"
              f" run {done}/{runs}", end="" if done < runs else "\n", file=sys.stderr,
              flush=True)

    report = bench(models, BenchConfig(args.runs, args.warmup, args.new_tokens, args.threads),
                   progress=progress)
    table = to_markdown(report)
    if args.peers:
        from .bench import load_peers
        report["peers"] = load_peers(args.peers)
        ours = [r for r in report["results"] if "summary" in r]
        table += "\n| peer | file MB | decode tok/s |" + "".join(
            f" x {r['quantization']} |" for r in ours) + "\n|---|---:|---:|" + "---:|" * len(ours)
        for p in report["peers"]:
            speed = p["decode_tok_s"] or 0.0
            table += (f"\n| {p['label']} | {p['file_mb'] or 0:.1f} | {speed:.1f} |"
                      + "".join(f" {r['summary']['decode_tok_s']['median'] / speed:.2f} |"
                                if speed else " - |" for r in ours))
        table += ("\n\nThe x columns: our decode speed divided by the peer's (above 1: ours is "
                  "faster), measured in the same session.\n")
    if args.chart:
        from .bench import chart
        chart(report, args.chart, report.get("peers"))
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


def _build_standard(folder: Path, modes: list[str]) -> list[str]:
    """The standard-workload model in each mode (cached: an existing file is reused)."""
    from .config import ExportConfig, ModelConfig, Quantization

    paths, todo = [], []
    for mode in modes:
        q = Quantization.parse(mode)
        path = folder / f"gpt2-small-random-{q.value}.tflite"
        paths.append(str(path))
        if not path.exists():
            todo.append((q, path))
    if todo:
        _progress("loading the conversion stack (TensorFlow, KerasHub)...")
        from .authoring import random_causal_lm
        from .export import export

        authored = random_causal_lm(ModelConfig(), sequence_length=256, seed=0)
        for q, path in todo:
            export(authored, path, ExportConfig(quantization=q), progress=_progress)
    return paths


# -- eval / compare ------------------------------------------------------------------------
def _add_quality(sub) -> None:
    p = sub.add_parser("eval", help="perplexity of .tflite models on a text (and agreement "
                                    "with the Keras float model)",
                       description="Sliding-window perplexity of each MODEL on --text; with "
                                   "--reference PRESET also the Keras float model's perplexity, "
                                   "top-1 agreement and mean KL against it.")
    p.add_argument("models", nargs="+")
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--holdout", type=float, help="evaluate only the last fraction (e.g. 0.1)")
    p.add_argument("--reference", help="a preset (name or directory) for the float reference")
    p.add_argument("--window", type=int, default=256)
    p.add_argument("--stride", type=int, default=128)
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--json", metavar="FILE")
    p.set_defaults(func=cmd_eval)

    c = sub.add_parser("compare", help="convert to every quantization and write a decision "
                                       "table (markdown, JSON, PNG)",
                       description="Convert a preset in every mode, then measure size, speed, "
                                   "perplexity, agreement, KL and greedy divergence of each.")
    c.add_argument("--preset", help="default: the embedded model")
    c.add_argument("--text", required=True)
    c.add_argument("--holdout", type=float)
    c.add_argument("--modes", default="none,float16,dynamic-int8,full-int8")
    c.add_argument("--calibration-text", help="text file for full-int8 calibration")
    c.add_argument("--window", type=int, default=256)
    c.add_argument("--stride", type=int, default=128)
    c.add_argument("--max-tokens", type=int)
    c.add_argument("--bench-runs", type=int, default=3)
    c.add_argument("--extra", action="append", default=[], metavar="LABEL=FILE",
                   help="also compare an existing .tflite (repeatable)")
    c.add_argument("-o", "--out-dir", required=True,
                   help="where the converted models and the report go (models already "
                        "there are reused)")
    c.add_argument("--report", default="compare", help="report file name (without suffix)")
    c.set_defaults(func=cmd_compare)


def cmd_eval(args) -> int:
    from .quality import evaluate
    from .runtime import load_model
    from .textdata import read_text

    models = {Path(m).name: load_model(m) for m in args.models}
    scorers = {k: m.score for k, m in models.items()}
    tokenizer = next(iter(models.values())).tokenizer
    reference = None
    if args.reference:
        _progress("loading the Keras reference model...")
        from .authoring import keras_scorer, load_causal_lm
        reference = "keras-float32"
        scorers = {reference: keras_scorer(load_causal_lm(args.reference, args.window)),
                   **scorers}
    from .compare import eval_ids
    ids = eval_ids(tokenizer, read_text(args.text), args.holdout, args.max_tokens)
    window = min([args.window] + [m.sequence_length for m in models.values()])
    stride = min(args.stride, window)
    _progress(f"{len(ids):,} tokens, window {window}, stride {stride}")

    def tick(done: int, total: int) -> None:
        print(f"\r  window {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)

    results = evaluate(ids, scorers, window, stride, reference, progress=tick).results()
    print("| model | perplexity | top-1 agreement | mean KL |\n|---|---:|---:|---:|")
    for name, r in results.items():
        agree = "-" if r["top1_agreement"] is None else f"{100 * r['top1_agreement']:.2f}%"
        kl = "-" if r["mean_kl"] is None else f"{r['mean_kl']:.4f}"
        print(f"| {name} | {r['perplexity']:.3f} | {agree} | {kl} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"text": args.text, "holdout": args.holdout,
                                               "tokens": len(ids), "window": window,
                                               "stride": stride, "results": results}, indent=2))
    return 0


def cmd_compare(args) -> int:
    from .presets import DEFAULT_PRESET

    _progress("loading the conversion stack (TensorFlow, KerasHub)...")
    from .compare import CompareConfig, run_compare, to_markdown
    from .textdata import read_text, split_holdout

    extra = {}
    for item in args.extra:
        label, _, path = item.partition("=")
        if not path:
            raise PocketLMError(f"--extra takes LABEL=FILE, not {item!r}")
        extra[label] = path
    calibration = None
    if args.calibration_text:
        calibration = read_text(args.calibration_text)
        if args.holdout and Path(args.calibration_text).resolve() == Path(args.text).resolve():
            calibration = split_holdout(calibration, args.holdout)[0]  # never the held-out part
    cfg = CompareConfig(preset=args.preset or DEFAULT_PRESET, text=args.text,
                        out_dir=args.out_dir, modes=tuple(args.modes.split(",")),
                        holdout=args.holdout, window=args.window, stride=args.stride,
                        max_tokens=args.max_tokens, bench_runs=args.bench_runs,
                        calibration_text=calibration, extra_models=extra,
                        report_name=args.report)
    report = run_compare(cfg, progress=_progress)
    print(to_markdown(report))
    print(f"wrote {args.out_dir}/{args.report}.md, .json and .png")
    return 0


# -- info ----------------------------------------------------------------------------------
def _add_info(sub) -> None:
    p = sub.add_parser("info", help="describe a .tflite file: contract, signatures, ops",
                       description="Describe MODEL: contract, signatures, sizes, metadata, "
                                   "op histogram and which ops stay float.")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)


def cmd_info(args) -> int:
    from .inspect import describe, render_text

    report = describe(args.model)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0


# -- serve ---------------------------------------------------------------------------------
def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="the autocomplete web app and an OpenAI-style HTTP API",
                       description="Serve the autocomplete web app and an OpenAI-compatible "
                                   "HTTP API (POST /v1/completions, GET /v1/models, GET "
                                   "/health) on 127.0.0.1. Needs no TensorFlow for a "
                                   "converted model.")
    p.add_argument("model", nargs="?", help="a .tflite model or a directory of them "
                                            "(default: the embedded model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("-p", "--port", type=int, default=8765, help="port (default 8765; 0 = any)")
    p.add_argument("--models-dir", help="directory the model picker lists (default: the "
                                        "model's own directory)")
    p.add_argument("--queue-size", type=int, default=4,
                   help="requests that may wait per model while one runs (default 4); "
                        "more get 503")
    p.add_argument("--threads", type=int, default=2, help="interpreter threads per model")
    p.add_argument("--log-prompts", action="store_true",
                   help="log prompts (off by default: prompts stay private)")
    p.add_argument("--block-words", metavar="FILE",
                   help="extra words for the profanity filter, one per line")
    p.add_argument("--allow-words", metavar="FILE",
                   help="words the profanity filter must let through, one per line")
    p.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS",
                   help="slow generation down per token (demos and tests)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from .app.launch import build_config
    from .app.server import serve

    serve(build_config(args, _progress))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pocketlm", description="Put a KerasHub LLM on the device: convert, quantize, run.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_convert(sub)
    _add_generate(sub)
    _add_info(sub)
    _add_demo(sub)
    _add_bench(sub)
    _add_quality(sub)
    _add_serve(sub)
    return parser


def _version() -> str:
    from . import __version__
    return f"pocketlm {__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PocketLMError as exc:
        print(f"pocketlm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("pocketlm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
