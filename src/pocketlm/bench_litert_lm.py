"""The LiteRT-LM side of ``pocketlm bench``: the standard workload through LiteRT-LM on a
``.litertlm`` bundle, and pocketlm's engine against it in one process.

``pocketlm bench FILE --engine both`` times each engine in its own process (load time, time
to first token and peak RSS are per process). Their decode speeds are not comparable that
way on a shared machine: the same worker measured 42 and then 29 tok/s on a 1.5B bundle in
two consecutive processes (docs/benchmarks.md). So the ratio it prints comes from
:func:`paired`: both engines loaded in one child process, alternating greedy runs of the
standard prompt, the ratio taken run by run (median, min and max).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .bench import (LONG_PROMPT_TOKENS, PROMPT_TEXT, BenchConfig, _rss_mb, _summary,
                    prompt_ids, run_child, worker_cmd)


def _open_engine(path: str, threads: int):
    """``path`` loaded in LiteRT-LM on the CPU (its XNNPACK cache in pocketlm's cache
    folder, benchmark info on), and LiteRT-LM's greedy sampler settings."""
    import litert_lm

    from .runtime.litert_lm_engine import engine_cache_dir

    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    engine = litert_lm.Engine(path, backend=litert_lm.Backend.CPU(thread_count=threads),
                              cache_dir=str(engine_cache_dir(Path(path))),
                              enable_benchmark=True)
    return engine, litert_lm.SamplerConfig(top_k=1, temperature=1.0, seed=0)


def _greedy_run(engine, greedy, text: str, tokens: int):
    """One session: prefill ``text`` (no prompt template), decode up to ``tokens`` tokens;
    LiteRT-LM's benchmark info and the wall time of the two calls, seconds."""
    session = engine.create_session(apply_prompt_template=False, sampler_config=greedy,
                                    max_output_tokens=tokens)
    try:
        t = time.perf_counter()
        session.run_prefill([text])
        session.run_decode()
        return session.get_benchmark_info(), time.perf_counter() - t
    finally:
        session.close()


def worker_litert_lm(path: str, cfg: BenchConfig) -> dict:
    """The same workload through LiteRT-LM (a ``.litertlm`` bundle): the standard prompt as
    text (LiteRT-LM tokenizes it and prepends the bundle's start token), greedy, timings
    from LiteRT-LM's own benchmark info. It stops at a stop token, so ``new_tokens`` are
    counted, not assumed; the long-prompt TTFT uses the prompt repeated to ~128 tokens."""
    rss_before = _rss_mb()
    t0 = time.perf_counter()
    engine, greedy = _open_engine(path, cfg.threads)
    load_s = time.perf_counter() - t0
    contract = _bundle_contract(path)
    # The long prompt: ~128 tokens, or fewer where the bundle holds fewer (LiteRT-LM refuses a
    # prompt past max_num_tokens). Words are added while the prompt still fits.
    limit = min(LONG_PROMPT_TOKENS, (int(contract.max_num_tokens) if contract
                                     else LONG_PROMPT_TOKENS + 2) - 2)
    words, long_text = (PROMPT_TEXT + " ") * 40, PROMPT_TEXT
    for i in range(len(words.split())):
        candidate = " ".join(words.split()[:i + 1])
        if len(engine.tokenize(candidate)) > limit:
            break
        long_text = candidate

    def one() -> dict[str, float]:
        info, total = _greedy_run(engine, greedy, PROMPT_TEXT, cfg.new_tokens)
        long_info, _ = _greedy_run(engine, greedy, long_text, 1)
        return {"ttft_10_s": info.time_to_first_token_in_second,
                "ttft_128_s": long_info.time_to_first_token_in_second,
                "decode_tok_s": info.last_decode_tokens_per_second, "total_100_s": total,
                "new_tokens": float(info.last_decode_token_count)}

    t0 = time.perf_counter()
    for _ in range(cfg.warmup):
        one()
    warmup_s = time.perf_counter() - t0
    runs = []
    for i in range(cfg.runs):
        runs.append(one())
        print(f"PROGRESS {i + 1}/{cfg.runs}", file=sys.stderr, flush=True)
    engine.close()
    return {"model": path, "engine": "litert-lm", "file_mb": os.path.getsize(path) / 2**20,
            "load_s": load_s, "warmup_s": warmup_s, "runs": runs, "peak_rss_mb": _rss_mb(),
            "rss_before_load_mb": rss_before,
            "quantization": contract.quantization if contract else "?"}


def _bundle_contract(path: str):
    """The pocketlm contract of a bundle pocketlm made (None for other bundles): sizes the
    long prompt and labels the quantization."""
    try:
        from .runtime.loader import inspect_model
        return inspect_model(path).contract
    except Exception:  # noqa: BLE001 - a hint only; the benchmark itself reports errors
        return None


def bench_litert_lm(path: str, cfg: BenchConfig, progress, n: int, total: int) -> dict:
    from .runtime.bundle import is_bundle

    if not is_bundle(Path(path)):
        return {"model": path, "engine": "litert-lm",
                "error": "LiteRT-LM runs .litertlm bundles (convert --format litertlm)"}
    proc = run_child(worker_cmd(path, cfg, "litert-lm"), path, progress, n, total)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"model": path, "engine": "litert-lm",
                "error": f"LiteRT-LM benchmark process exited with {proc.returncode}"}
    raw = json.loads(lines[-1])
    raw["first_load_s"] = None
    raw["summary"] = {k: _summary([r[k] for r in raw["runs"]]) for k in raw["runs"][0]}
    return raw


def paired_worker(path: str, cfg: BenchConfig) -> dict:
    """Runs inside the child: ``cfg.warmup`` unmeasured then ``cfg.runs`` measured pairs, each
    a ``cfg.new_tokens``-token greedy run in pocketlm's engine, then one in LiteRT-LM's.
    Returns decode tokens/s of both engines per run (LiteRT-LM's from its own benchmark
    info, as in :func:`worker_litert_lm`)."""
    from .runtime import load_model

    engine, greedy = _open_engine(path, cfg.threads)
    model = load_model(path, num_threads=cfg.threads)
    prompt = prompt_ids(model)
    steps = max(1, min(cfg.new_tokens, model.sequence_length - len(prompt) + 1) - 1)
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(cfg.warmup + cfg.runs):
        token = int(np.argmax(model.start(prompt)))
        t0 = time.perf_counter()
        for _ in range(steps):
            token = int(np.argmax(model.step(token)))
        mine = steps / (time.perf_counter() - t0)
        other = _greedy_run(engine, greedy, PROMPT_TEXT, steps + 1)[0].last_decode_tokens_per_second
        if i >= cfg.warmup:
            ours.append(mine)
            theirs.append(other)
            print(f"PROGRESS {i + 1 - cfg.warmup}/{cfg.runs}", file=sys.stderr, flush=True)
    engine.close()
    return {"pocketlm_tok_s": ours, "litert_lm_tok_s": theirs}


def paired(path: str, cfg: BenchConfig, progress=None, n: int = 1, total: int = 1) -> dict:
    """Run :func:`paired_worker` in a child process; a summary dict (``ratio`` with median,
    min and max of pocketlm / LiteRT-LM per run, each engine's median tok/s, ``runs``), or
    ``{"error": ...}`` when the child fails."""
    proc = run_child(worker_cmd(path, cfg, "paired"), path, progress, n, total)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"error": f"the one-process comparison exited with {proc.returncode}"}
    raw = json.loads(lines[-1])
    ratios = [a / b for a, b in zip(raw["pocketlm_tok_s"], raw["litert_lm_tok_s"]) if b > 0]
    if not ratios:
        return {"error": "LiteRT-LM reported no decode speed"}
    return {"runs": len(ratios),
            "ratio": {"median": statistics.median(ratios), "min": min(ratios),
                      "max": max(ratios)},
            "pocketlm_tok_s": statistics.median(raw["pocketlm_tok_s"]),
            "litert_lm_tok_s": statistics.median(raw["litert_lm_tok_s"]), **raw}
