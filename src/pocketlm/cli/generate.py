"""``pocketlm generate``, ``info`` and ``serve``: the runtime side, which never imports
TensorFlow (tests/test_runtime_without_tensorflow.py)."""

from __future__ import annotations

import json
import os
import sys

from ..errors import UsageError
from ..paths import check_input_file, check_model_file
from .args import Stdout, add_command, add_generation_options, integer, number
from .convert import progress

MAX_THREADS = 256


def add_generate(sub) -> None:
    p = add_command(sub, "generate", cmd_generate,
                    help="complete a prompt with a .tflite model (streams)",
                    description="Complete PROMPT with MODEL, streaming text to stdout (notes "
                                "go to stderr). Needs only ai-edge-litert and numpy, not "
                                "TensorFlow.")
    p.add_argument("model", help="a .tflite language model or a .litertlm bundle")
    p.add_argument("prompt", help="the text to complete ('-' reads standard input)")
    p.add_argument("--engine", choices=["pocketlm", "litert-lm"], default="pocketlm",
                   help="pocketlm: pocketlm's light runtime (default); litert-lm: Google's "
                        "LiteRT-LM on a .litertlm bundle (pip install 'pocketlm[litert-lm]'; "
                        "its own tokenizer, start/stop tokens and sampler)")
    add_generation_options(p, max_new_tokens=100, temperature=0.0, top_k=0, seed=None)
    p.add_argument("--context-window", type=integer(1), metavar="N",
                   help="keep only the last N units of the prompt (default: all that fits)")
    p.add_argument("--context-unit", choices=["tokens", "words"], default="tokens",
                   help="the unit of --context-window")
    p.add_argument("--tokenizer", help="for models that carry none: gpt2, a KerasHub preset "
                                       "directory, or VOCAB.json,MERGES.txt")
    p.add_argument("--threads", type=integer(1, MAX_THREADS), default=2,
                   help="interpreter threads")
    p.add_argument("--no-prompt", action="store_true", help="print only the completion")
    p.add_argument("--stats", action="store_true", help="print timings to stderr")
    p.add_argument("--trust", action="store_true",
                   help="skip the first-use check that loads the file in a child process, "
                        "with the engine chosen (so a corrupt file cannot crash this one)")


def _read_prompt(arg: str) -> bytes:
    if arg == "-":
        return sys.stdin.buffer.read()
    # argv arrives decoded with surrogateescape: recover the raw bytes to validate them.
    return os.fsencode(arg)


def _tokens(n: int) -> str:
    return f"{n} token{'' if n == 1 else 's'}"


def _window_note(prepared, args) -> str | None:
    """One line on what was left out of the prompt, or None."""
    kept = _tokens(len(prepared.ids))
    if prepared.windowed and args.context_unit == "words":
        n = args.context_window
        return f"note: --context-window {n} cut the prompt to its last {n} words ({kept})"
    if prepared.windowed:
        return f"note: --context-window {args.context_window} cut the prompt to its last {kept}"
    if prepared.truncated:
        return f"note: the prompt was cut to its last {kept} to fit the model's window"
    return None


def _check_tokenizer_spec(spec: str) -> None:
    """The files --tokenizer names exist (their content is checked when they are read)."""
    if spec == "gpt2":
        return
    if "," in spec:
        for path in spec.split(",", 1):
            check_input_file(path, "tokenizer file")
    elif not (os.path.isdir(spec) or (os.path.isfile(spec) and spec.endswith((".spm",
                                                                               ".model")))):
        raise UsageError(f"--tokenizer takes gpt2, a KerasHub preset directory, "
                         f"VOCAB.json,MERGES.txt or a SentencePiece .spm/.model file; {spec} "
                         "is none of these")


def cmd_generate(args) -> int:
    from ..config import GenerationConfig
    from ..runtime import load_model, stream

    try:
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed,
                               context_window=args.context_window,
                               context_unit=args.context_unit)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_model_file(args.model)
    if args.engine == "litert-lm":
        return _generate_litert_lm(args, cfg)
    if args.tokenizer:
        _check_tokenizer_spec(args.tokenizer)
    prompt = _read_prompt(args.prompt)
    if not args.trust:
        from ..runtime.guard import verify_in_child
        verify_in_child(args.model, tokenizer=args.tokenizer)  # a crash stays in the child
    model = load_model(args.model, tokenizer=args.tokenizer, num_threads=args.threads)
    sampling = cfg.temperature or cfg.top_k or cfg.top_p < 1
    if sampling and getattr(model, "fixed_sampling", False):
        progress("note: this model picks its tokens inside its graph (greedy); "
                 "--temperature, --top-k and --top-p do not apply")
    done = stream(model, prompt, cfg)  # prompt errors surface before anything is printed
    note = _window_note(done.prompt, args)
    if note:
        progress(note)
    if not args.no_prompt:
        Stdout.write(done.prompt.text)
    for piece in done:
        Stdout.write(piece)
    Stdout.write("\n")
    if done.stop_reason == "window_full":
        progress(f"note: stopped after {len(done.token_ids)} of {cfg.max_new_tokens} new "
                 f"tokens: the model's window ({model.sequence_length} tokens) is full")
    if args.stats and getattr(model, "fixed_sampling", False):
        progress(f"{len(done.prompt.ids)} prompt tokens, {len(done.token_ids)} new tokens; "
                 f"the graph ran the whole generation in "
                 f"{done.time_to_first_token * 1000:.0f} ms")
    elif args.stats:
        progress(f"{len(done.prompt.ids)} prompt tokens, {len(done.token_ids)} new tokens "
                 f"({done.stop_reason}); first token {done.time_to_first_token * 1000:.0f} "
                 f"ms, {done.tokens_per_second:.1f} tokens/s")
    return 0


def _generate_litert_lm(args, cfg) -> int:
    """``generate --engine litert-lm``: the bundle through LiteRT-LM (text in, text out)."""
    import time

    from ..runtime.litert_lm_engine import LiteRTLMEngine, Sampling, check_bundle

    for flag, given in (("--context-window", args.context_window is not None),
                        ("--tokenizer", bool(args.tokenizer))):
        if given:
            raise UsageError(f"{flag} does not apply to --engine litert-lm (LiteRT-LM uses "
                             "the bundle's own tokenizer and the whole prompt)")
    try:
        prompt = _read_prompt(args.prompt).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("the prompt is not valid UTF-8") from None
    if not prompt.strip():
        raise UsageError("the prompt is empty")
    check_bundle(args.model)
    if not args.trust:
        from ..runtime.guard import verify_in_child
        verify_in_child(args.model, engine="litert-lm")  # a crash of LiteRT-LM stays there
    t0 = time.perf_counter()
    with LiteRTLMEngine(args.model, num_threads=args.threads) as engine:
        loaded = time.perf_counter()
        if not args.no_prompt:
            Stdout.write(prompt)
        pieces, first = 0, None
        for piece in engine.stream(prompt, cfg.max_new_tokens, Sampling(
                cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed)):
            first = first or time.perf_counter()
            pieces += 1
            Stdout.write(piece)
        Stdout.write("\n")
    if args.stats:
        end = time.perf_counter()
        progress(f"LiteRT-LM: loaded in {(loaded - t0) * 1000:.0f} ms, first text "
                 f"{((first or end) - loaded) * 1000:.0f} ms after, {pieces} pieces in "
                 f"{end - loaded:.2f} s (pocketlm bench --engine both gives tokens/s)")
    return 0


def add_info(sub) -> None:
    p = add_command(sub, "info", cmd_info,
                    help="describe a .tflite file: contract, signatures, ops",
                    description="Describe MODEL: contract, signatures, sizes, metadata, op "
                                "histogram and which ops stay float.")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def cmd_info(args) -> int:
    from ..inspect import describe, render_text

    check_model_file(args.model)
    report = describe(args.model)
    print(json.dumps(report, indent=2) if args.json else render_text(report))
    return 0


def add_serve(sub) -> None:
    p = add_command(sub, "serve", cmd_serve,
                    help="the autocomplete web app and an OpenAI-style HTTP API",
                    description="Serve the autocomplete web app and an OpenAI-compatible HTTP "
                                "API (POST /v1/completions, POST /v1/chat/completions, GET "
                                "/v1/models, GET /health) on "
                                "127.0.0.1. Needs no TensorFlow for a converted model.")
    p.add_argument("model", nargs="?", help="a .tflite model or .litertlm bundle, or a "
                                            "directory of them (default: the embedded model)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (127.0.0.1: this machine only)")
    p.add_argument("-p", "--port", type=integer(0, 65535), default=8765,
                   help="port, 0..65535 (0 = any free port)")
    p.add_argument("--models-dir", help="directory the model picker lists (default: the "
                                        "model's own directory)")
    p.add_argument("--queue-size", type=integer(0, 10_000), default=4,
                   help="requests that may wait per model while one runs; more get 503")
    p.add_argument("--threads", type=integer(1, MAX_THREADS), default=2,
                   help="interpreter threads per model")
    p.add_argument("--log-prompts", action="store_true",
                   help="log prompts (off by default: prompts stay private)")
    p.add_argument("--block-words", metavar="FILE",
                   help="extra words for the profanity filter, one per line")
    p.add_argument("--allow-words", metavar="FILE",
                   help="words the profanity filter must let through, one per line")
    p.add_argument("--token-delay", type=number(0, 60), default=0.0, metavar="SECONDS",
                   help="slow generation down per token, 0..60 s (demos and tests)")


def cmd_serve(args) -> int:
    from ..app.launch import build_config
    from ..app.server import serve

    for path in (args.block_words, args.allow_words):
        if path:
            check_input_file(path, "word list")
    if args.models_dir and os.path.exists(args.models_dir) and not os.path.isdir(
            args.models_dir):
        raise UsageError(f"{args.models_dir} is a file, not a directory")
    serve(build_config(args, progress))
    return 0
