"""``pocketlm bench``, ``eval`` and ``compare``: measuring models. Paths and numbers are
checked before any model is loaded or converted."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UsageError
from ..paths import check_input_file, check_model_file, check_output_dir, check_output_file
from ..progress import Progress
from .args import QUANTIZATIONS, add_command, integer, number, quantizations
from .convert import progress
from .generate import MAX_THREADS

MODES_HELP = f"comma-separated quantization modes: {' | '.join(QUANTIZATIONS)}"


def add_bench(sub) -> None:
    p = add_command(sub, "bench", cmd_bench,
                    help="measure size, load time, first-token time, decode speed and peak "
                         "memory of .tflite models",
                    description="Benchmark .tflite models on the standard workload (10-token "
                                "prompt, 100 greedy new tokens, end token ignored), each in its "
                                "own process; medians over several runs after a warm-up.")
    p.add_argument("models", nargs="*", help=".tflite files")
    p.add_argument("--build-standard", metavar="DIR",
                   help="first build the standard-workload model (GPT-2 small shape, random "
                        "weights, seed 0) in each of --modes into DIR, and benchmark those")
    p.add_argument("--modes", type=quantizations, default="none,dynamic-int8,float16",
                   help=f"for --build-standard: {MODES_HELP}")
    p.add_argument("--runs", type=integer(1, 1000), default=5, help="measured runs per model")
    p.add_argument("--warmup", type=integer(0, 100), default=1,
                   help="unmeasured runs before them")
    p.add_argument("--new-tokens", type=integer(1, 100_000), default=100,
                   help="tokens generated per run")
    p.add_argument("--threads", type=integer(1, MAX_THREADS), default=2,
                   help="interpreter threads")
    p.add_argument("--engine", choices=["pocketlm", "litert-lm", "both"], default="pocketlm",
                   help="which engine runs each file; both: pocketlm's and LiteRT-LM's on the "
                        "same .litertlm file, one after the other, with the speed ratio")
    p.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    p.add_argument("--markdown", metavar="FILE", help="write the table as markdown")
    p.add_argument("--peers", metavar="JSONL", help="peer results from ../shared/peers (one "
                                                    "JSON line each) to compare against")
    p.add_argument("--chart", metavar="PNG", help="bar chart of decode speed (needs matplotlib)")


def cmd_bench(args) -> int:
    from ..bench import BenchConfig, bench, to_markdown

    models = list(args.models)
    if not models and not args.build_standard:
        raise UsageError("give .tflite files to benchmark, or --build-standard DIR")
    for m in models:
        check_model_file(m)
    _check_outputs(args.json, args.markdown, args.chart)
    if args.peers:
        check_input_file(args.peers, "peers file")
    if args.build_standard:
        check_output_dir(args.build_standard)
        models += _build_standard(Path(args.build_standard), args.modes)
    bars: dict[str, Progress] = {}

    def tick(path: str, n: int, total: int, done: int, runs: int) -> None:
        # One bar per job: with --engine both a file is run twice.
        bar = bars.setdefault(str(n), Progress(f"[{n}/{total}] {Path(path).name}",
                                               unit="runs"))
        bar.update(done, runs)

    engines = ("pocketlm", "litert-lm") if args.engine == "both" else (args.engine,)
    if "litert-lm" in engines:
        from ..runtime.bundle import is_bundle
        from ..runtime.guard import verify_in_child
        from ..runtime.litert_lm_engine import _import, check_bundle
        _import()  # one line now if LiteRT-LM is not installed
        for m in models:
            if not is_bundle(Path(m)):
                raise UsageError(f"{m} is not a .litertlm bundle: --engine {args.engine} "
                                 "runs bundles (pocketlm convert --format litertlm)")
        for m in models:
            check_bundle(m)
            # LiteRT-LM loads the bundle in-process: a bundle that crashes it is refused here
            # in one line (a child took the crash), not found out minutes into the runs.
            verify_in_child(m, engine="litert-lm")
    report = bench(models, BenchConfig(args.runs, args.warmup, args.new_tokens, args.threads),
                   progress=tick, engines=engines)
    for bar in bars.values():
        bar.close()
    table = to_markdown(report)
    if args.peers:
        from ..bench import load_peers
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
        from ..bench import chart
        chart(report, args.chart, report.get("peers"))
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(table)
    return 0


def _check_outputs(*paths: str | None) -> None:
    """Each output file can be written; its missing folders are made now, so that writing it
    after minutes of work cannot fail on them."""
    for path in paths:
        if path:
            example = "report" + (Path(path).suffix or ".json")
            check_output_file(path, example).parent.mkdir(parents=True, exist_ok=True)


def _build_standard(folder: Path, modes) -> list[str]:
    """The standard-workload model in each mode (cached: an existing file is reused)."""
    from ..config import ExportConfig, ModelConfig

    paths, todo = [], []
    for q in modes:
        path = folder / f"gpt2-small-random-{q.value}.tflite"
        paths.append(str(path))
        if not path.exists():
            todo.append((q, path))
    if todo:
        progress("loading the conversion stack (TensorFlow, KerasHub)...")
        from ..authoring import random_causal_lm
        from ..export import export

        authored = random_causal_lm(ModelConfig(), sequence_length=256, seed=0)
        for q, path in todo:
            export(authored, path, ExportConfig(quantization=q), progress=progress)
    return paths


def _add_text_options(p) -> None:
    p.add_argument("--text", required=True, help="a UTF-8 text file")
    p.add_argument("--holdout", type=number(0, 1, lo_open=True, hi_open=True),
                   help="evaluate only the last fraction of the text, in (0, 1), e.g. 0.1")
    p.add_argument("--window", type=integer(2, 65536), default=256,
                   help="tokens of context per scored window (at most the model's)")
    p.add_argument("--stride", type=integer(1, 65536), default=128,
                   help="tokens between windows (at most --window)")
    p.add_argument("--max-tokens", type=integer(2), metavar="N",
                   help="evaluate at most the first N tokens (default: all)")


def add_quality(sub) -> None:
    p = add_command(sub, "eval", cmd_eval,
                    help="perplexity of .tflite models on a text (and agreement with the "
                         "Keras float model)",
                    description="Sliding-window perplexity of each MODEL on --text; with "
                                "--reference PRESET also the Keras float model's perplexity, "
                                "top-1 agreement and mean KL against it.")
    p.add_argument("models", nargs="+", help=".tflite files")
    _add_text_options(p)
    p.add_argument("--reference", help="a preset (name or directory) for the float reference")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")

    c = add_command(sub, "compare", cmd_compare,
                    help="convert to every quantization and write a decision table "
                         "(markdown, JSON, PNG)",
                    description="Convert a preset in every mode, then measure size, speed, "
                                "perplexity, agreement, KL and greedy divergence of each.")
    c.add_argument("--preset", help="a preset name or directory (default: the embedded model)")
    _add_text_options(c)
    c.add_argument("--modes", type=quantizations, default="none,float16,dynamic-int8,full-int8",
                   help=MODES_HELP)
    c.add_argument("--calibration-text", help="text file for full-int8 calibration")
    c.add_argument("--bench-runs", type=integer(1, 1000), default=3,
                   help="measured speed runs per model")
    c.add_argument("--extra", action="append", default=[], metavar="LABEL=FILE",
                   help="also compare an existing .tflite (repeatable)")
    c.add_argument("-o", "--out-dir", required=True,
                   help="where the converted models and the report go (models already there "
                        "are reused)")
    c.add_argument("--report", default="compare", help="report file name (without suffix)")


def cmd_eval(args) -> int:
    from ..compare import eval_ids
    from ..quality import evaluate
    from ..runtime import load_model
    from ..textdata import read_text

    for m in args.models:
        check_model_file(m)
    check_input_file(args.text)
    _check_outputs(args.json)
    if args.reference:
        from ..presets import check_positions
        check_positions(args.reference, args.window, "--window")
    models = {Path(m).name: load_model(m) for m in args.models}
    scorers = {k: m.score for k, m in models.items()}
    tokenizer = next(iter(models.values())).tokenizer
    reference = None
    if args.reference:
        progress("loading the Keras reference model...")
        from ..authoring import keras_scorer, load_causal_lm
        reference = "keras-float32"
        scorers = {reference: keras_scorer(load_causal_lm(args.reference, args.window)),
                   **scorers}
    ids = eval_ids(tokenizer, read_text(args.text), args.holdout, args.max_tokens)
    if len(ids) < 2:
        raise UsageError(f"{args.text} holds {len(ids)} token{'' if len(ids) == 1 else 's'}"
                         f"{' in its held-out part' if args.holdout else ''}: perplexity "
                         "needs at least 2")
    window = min([args.window] + [m.sequence_length for m in models.values()])
    stride = min(args.stride, window)
    progress(f"{len(ids):,} tokens, window {window}, stride {stride}")
    bar = Progress("scoring", unit="windows")
    results = evaluate(ids, scorers, window, stride, reference, progress=bar).results()
    bar.close()
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
    from ..presets import DEFAULT_PRESET, check_positions

    preset = args.preset or DEFAULT_PRESET
    check_positions(preset, args.window, "--window")  # the window is the models' cache length
    check_input_file(args.text)
    check_output_dir(args.out_dir)
    if not args.report or Path(args.report).name != args.report or args.report in (".", ".."):
        raise UsageError(f"--report takes a file name without folders, not {args.report!r}")
    if args.calibration_text:
        check_input_file(args.calibration_text)
    extra = {}
    for item in args.extra:
        label, _, path = item.partition("=")
        if not path or not label:
            raise UsageError(f"--extra takes LABEL=FILE, not {item!r}")
        extra[label] = str(check_model_file(path))
    from ..textdata import read_text, split_holdout

    evaluated = read_text(args.text)
    if args.holdout:
        evaluated = split_holdout(evaluated, args.holdout)[1]
    if len(evaluated.split()) < 2:  # a word or two is far too little, but no cause to stop
        raise UsageError(f"{args.text} has no text to evaluate"
                         f"{' in its held-out part' if args.holdout else ''}")
    calibration = None
    if args.calibration_text:
        calibration = read_text(args.calibration_text)
        if args.holdout and Path(args.calibration_text).resolve() == Path(args.text).resolve():
            calibration = split_holdout(calibration, args.holdout)[0]  # never the held-out part
    progress("loading the conversion stack (TensorFlow, KerasHub)...")
    from ..compare import CompareConfig, run_compare, to_markdown

    cfg = CompareConfig(preset=preset, text=args.text, out_dir=args.out_dir,
                        modes=tuple(q.value for q in args.modes), holdout=args.holdout,
                        window=args.window, stride=args.stride, max_tokens=args.max_tokens,
                        bench_runs=args.bench_runs, calibration_text=calibration,
                        extra_models=extra, report_name=args.report)
    report = run_compare(cfg, progress=progress)
    print(to_markdown(report))
    print(f"wrote {args.out_dir}/{args.report}.md, .json and .png")
    return 0
