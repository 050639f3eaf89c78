"""``pocketlm bench``: size, load time, time to first token, decode speed and peak memory.

The standard workload (../shared/peers uses the same): batch 1, a fixed 10-token prompt, then
exactly 100 new tokens chosen greedily with the end token ignored, 2 threads. Each model is
measured in its own child process, so load time and peak RSS are that model's alone; inside
it, one warm-up run (XNNPACK packs weights on the first call) and then ``runs`` timed runs.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .roofline import probe_in_child, read_bandwidth

# The peers' prompt ("The quick brown fox jumps over the lazy dog." in GPT-2 ids). Models
# of other vocabularies get the same text in their own tokens (no start token, as the peers).
PROMPT_TEXT = "The quick brown fox jumps over the lazy dog."
PROMPT_IDS = [464, 2068, 7586, 21831, 18045, 625, 262, 16931, 3290, 13]


def prompt_ids(model) -> list[int]:
    """The standard prompt in ``model``'s tokens (GPT-2's ids for GPT-2 vocabularies)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None or tokenizer.vocabulary_size == 50257:
        return PROMPT_IDS
    return tokenizer.encode(PROMPT_TEXT)
LONG_PROMPT_TOKENS = 128


@dataclass
class BenchConfig:
    runs: int = 5
    warmup: int = 1
    new_tokens: int = 100
    threads: int = 2


def _rss_mb() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux: VmHWM of /proc/self/status, the high-water mark of this process's own address
    space. Not ``ru_maxrss``: Linux carries it over fork and exec, so a child started by a
    big parent (``bench --build-standard`` converts models first, several GiB) would report
    the parent's peak instead of its own. Elsewhere ``ru_maxrss`` (KiB; bytes on macOS).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024.0


def _one_run(model, new_tokens: int) -> dict[str, float]:
    prompt = prompt_ids(model)
    # A model with a short window gets fewer tokens rather than an error.
    new_tokens = min(new_tokens, model.sequence_length - len(prompt) + 1)
    long_len = min(LONG_PROMPT_TOKENS, model.sequence_length)
    t0 = time.perf_counter()
    logits = model.start(prompt)
    token = int(np.argmax(logits))
    t1 = time.perf_counter()
    for _ in range(new_tokens - 1):
        token = int(np.argmax(model.step(token)))
    t_end = time.perf_counter()
    long_ids = (prompt * (long_len // len(prompt) + 1))[:long_len]
    t2 = time.perf_counter()
    np.argmax(model.start(long_ids))
    t3 = time.perf_counter()
    return {"ttft_10_s": t1 - t0, "ttft_128_s": t3 - t2,
            "decode_tok_s": (new_tokens - 1) / (t_end - t1), "total_100_s": t_end - t0}


def worker(path: str, cfg: BenchConfig) -> dict:
    """Runs inside the child process: load, warm up, time ``cfg.runs`` runs."""
    from .runtime import load_model

    rss_before = _rss_mb()
    t0 = time.perf_counter()
    model = load_model(path, num_threads=cfg.threads)
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(cfg.warmup):
        _one_run(model, cfg.new_tokens)
    warmup_s = time.perf_counter() - t0
    runs = []
    for i in range(cfg.runs):
        runs.append(_one_run(model, cfg.new_tokens))
        print(f"PROGRESS {i + 1}/{cfg.runs}", file=sys.stderr, flush=True)
    from .roofline import decode_weight_bytes, resident_split

    peak, resident = _rss_mb(), resident_split()  # before reading the file's tensor table
    return {"model": path, "file_mb": os.path.getsize(path) / 2**20, "load_s": load_s,
            "decode_weight_mb": decode_weight_bytes(path) / 2**20, **resident,
            "warmup_s": warmup_s, "runs": runs, "peak_rss_mb": peak,
            "rss_before_load_mb": rss_before,
            "quantization": getattr(model, "info", None) and model.info.quantization}


def run_child(cmd: list[str], path: str, progress, n: int, total: int):
    """Run a benchmark child, passing its ``PROGRESS done/runs`` lines to ``progress``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("PROGRESS") and progress:
            done, runs = map(int, line.split()[1].split("/"))
            progress(path, n, total, done, runs)
    out, _ = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


def worker_cmd(path: str, cfg: BenchConfig, engine: str = "pocketlm") -> list[str]:
    """The command of a benchmark child (``python -m pocketlm.bench --worker``)."""
    return [sys.executable, "-m", "pocketlm.bench", "--worker", path, "--engine", engine,
            "--runs", str(cfg.runs), "--warmup", str(cfg.warmup), "--new-tokens",
            str(cfg.new_tokens), "--threads", str(cfg.threads)]


def _summary(values

: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def bench(paths: list[str], cfg: BenchConfig, progress=None,
          engines: tuple[str, ...] = ("pocketlm",)) -> dict:
    """Measure every model with every engine (``pocketlm``, ``litert-lm``), each in a child
    process; returns a JSON-ready report."""
    from .bench_litert_lm import bench_litert_lm, paired
    from .runtime.bundle import is_bundle

    results = []
    jobs = [(path, engine) for path in paths for engine in engines]
    if {"pocketlm", "litert-lm"} <= set(engines):  # and the ratio, from one process
        jobs += [(path, "paired") for path in paths if is_bundle(Path(path))]
    for n, (path, engine) in enumerate(jobs, 1):
        if engine == "litert-lm":
            results.append(bench_litert_lm(path, cfg, progress, n, len(jobs)))
            continue
        if engine == "paired":
            ours = [r for r in results if r["model"] == path and r.get("engine") == "pocketlm"]
            if ours:
                ours[0]["paired_with_litert_lm"] = paired(path, cfg, progress, n, len(jobs))
            continue
        # A first load packs the weights for XNNPACK and caches them; loads after that map
        # the cache. Prime it in a throwaway process and report both load times.
        prime = subprocess.run(worker_cmd(path, BenchConfig(0, 0, cfg.new_tokens, cfg.threads)),
                               capture_output=True, text=True)
        first_load = (json.loads(prime.stdout.strip().splitlines()[-1])["load_s"]
                      if prime.returncode == 0 and prime.stdout.strip() else None)
        proc = run_child(worker_cmd(path, cfg), path, progress, n, len(jobs))
        if proc.returncode != 0:
            results.append({"model": path, "error": f"benchmark process exited with "
                                                    f"{proc.returncode}"})
            continue
        raw = json.loads(proc.stdout.strip().splitlines()[-1])
        raw["first_load_s"] = first_load
        # The machine's streaming rate right after this model ran: a shared machine's
        # bandwidth drifts between models (40-80 GB/s measured here within minutes).
        raw["stream_bandwidth_gb_s"] = probe_in_child(cfg.threads)
        raw["engine"] = "pocketlm"
        keys = raw["runs"][0].keys()
        raw["summary"] = {k: _summary([r[k] for r in raw["runs"]]) for k in keys}
        results.append(raw)
    return {"workload": {"prompt_tokens": len(PROMPT_IDS), "long_prompt_tokens":
                         LONG_PROMPT_TOKENS, "new_tokens": cfg.new_tokens, "greedy": True,
                         "end_token": "ignored", "threads": cfg.threads, "runs": cfg.runs,
                         "warmup": cfg.warmup},
            "machine": {**machine_info(),
                        "numpy_read_bandwidth_gb_s": read_bandwidth(cfg.threads)},
            "results": results}


def engine_ratios(report: dict) -> list[tuple[str, float, dict | None]]:
    """(file name, pocketlm decode tok/s / LiteRT-LM's from their separate processes, the
    one-process comparison's summary or None) for each file run by both engines."""
    by = {(r["model"], r.get("engine", "pocketlm")): r for r in report["results"]
          if "summary" in r}
    return [(Path(m).name, r["summary"]["decode_tok_s"]["median"] /
             by[(m, "litert-lm")]["summary"]["decode_tok_s"]["median"],
             r.get("paired_with_litert_lm"))
            for (m, e), r in by.items() if e == "pocketlm" and (m, "litert-lm") in by]


def _ratio_line(name: str, separate: float, one: dict | None) -> str:
    if not one or "ratio" not in one:
        why = f" (the one-process comparison failed: {one['error']})" if one else ""
        return (f"\n{name}: pocketlm decodes {separate:.2f}x as fast as LiteRT-LM (same file, "
                f"separate processes){why}.")
    q = one["ratio"]
    return (f"\n{name}: pocketlm decodes {q['median']:.2f}x as fast as LiteRT-LM (same file, "
            f"both in one process, {one['runs']} alternating runs, {q['min']:.2f}-"
            f"{q['max']:.2f}; {separate:.2f}x from the separate processes above, which drift "
            "on a shared machine).")


def machine_info() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import ai_edge_litert
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"),
            "numpy": np.__version__, "platform": platform.platform()}


def _first(r: dict) -> str:
    return "-" if r.get("first_load_s") is None else f"{r['first_load_s']:.2f}"


def to_markdown(report: dict) -> str:
    rows = ["| model | quantization | file MiB | load s (first) | TTFT 10 ms | TTFT 128 ms | "
            "decode tok/s (min-max) | 100 tokens s | peak RSS MiB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        if "error" in r:
            rows.append(f"| {_label(r)} | error: {r['error']} |||||||")
            continue
        s = r["summary"]
        d = s["decode_tok_s"]
        rows.append(f"| {_label(r)} | {r['quantization']} | {r['file_mb']:.1f} | "
                    f"{r['load_s']:.2f} ({_first(r)}) | {s['ttft_10_s']['median'] * 1000:.1f} | "
                    f"{s['ttft_128_s']['median'] * 1000:.0f} | {d['median']:.1f} "
                    f"({d['min']:.1f}-{d['max']:.1f}) | {s['total_100_s']['median']:.2f} | "
                    f"{r['peak_rss_mb']:.0f} |")
    w = report["workload"]
    m = report["machine"]
    bound = bandwidth_bounds(report)
    ratios = "".join(_ratio_line(*r) for r in engine_ratios(report))
    if ratios:
        ratios += " LiteRT-LM's times are its own benchmark info; it stops at a stop token.\n"
    return "\n".join(rows) + ratios + bound + (
        f"\n\nWorkload: {w['prompt_tokens']}-token prompt, {w['new_tokens']} greedy new tokens "
        f"(end token ignored), {w['threads']} threads; {w['warmup']} warm-up + {w['runs']} timed "
        f"runs per model, medians. Load: with the packed-weights cache warm (first load, "
        f"which packs and caches them, in brackets). Machine: {m['cpu']}, {m['cores']} cores, Python "
        f"{m['python']}, ai-edge-litert {m['ai_edge_litert']}.\n")


def bandwidth_bounds(report: dict) -> str:
    """Lines comparing each model's decode speed with reading its weights once per token
    at the measured bandwidth (:mod:`pocketlm.roofline`)."""
    # The best rate the probe reached in this run: on a shared machine the probe drifts
    # (42-80 GB/s within minutes here), and the bound is what the machine can stream.
    probes = [r.get("stream_bandwidth_gb_s") for r in report["results"]]
    probes.append(report["machine"].get("stream_bandwidth_gb_s"))
    gbs = max((p for p in probes if p), default=None)
    lines = []
    for r in report["results"]:
        mb = r.get("decode_weight_mb")
        if not gbs or not mb or "summary" not in r:
            continue
        limit = gbs * 1e9 / (mb * 2**20)
        got = r["summary"]["decode_tok_s"]["median"]
        lines.append(f"\n{_label(r)}: decode reads {mb:.0f} MiB of weights per token; at "
                     f"{gbs:.1f} GB/s (LiteRT's best int8 matrix-vector rate in this run) the bound is {limit:.1f} tok/s;"
                     f" measured {got:.1f} tok/s = {100 * got / limit:.0f}% of it.")
        if r.get("rss_file_mb") is not None:
            lines.append(f" Resident at the end: {r['rss_file_mb']:.0f} MiB mapped from files "
                         f"(the model, packed weights), {r['rss_anon_mb']:.0f} MiB private.")
    return "".join(lines) + ("\n" if lines else "")


def _label(r: dict) -> str:
    name = Path(r["model"]).name
    return f"{name} (LiteRT-LM)" if r.get("engine") == "litert-lm" else name


def load_peers(path: str | Path) -> list[dict]:
    """Peer results (../shared/peers scripts: one JSON line each, optionally wrapped as
    {"label": ..., "result": {...}}) as rows comparable with ours."""
    rows = []
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        d = json.loads(line)
        r = d.get("result", d)
        rows.append({"label": d.get("label") or f"{r.get('peer')}-{r.get('precision')}",
                     "decode_tok_s": r.get("decode_tok_s"), "file_mb": r.get("model_file_mb"),
                     "ttft_s": r.get("ttft_s"), "other_cpu_frac": r.get("other_cpu_frac")})
    return rows


def chart(report: dict, path: str | Path, peers: list[dict] | None = None) -> None:
    """Decode tokens/s of our models and the peers, one bar each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars = [(f"pocketlm {r['quantization']}", r["summary"]["decode_tok_s"]["median"], "#4c72b0")
            for r in report["results"] if "summary" in r]
    bars += [(p["label"], p["decode_tok_s"] or 0.0, "#999999") for p in peers or []]
    bars.sort(key=lambda b: b[1])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(bars) + 1.2))
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=[b[2] for b in bars])
    for i, b in enumerate(bars):
        ax.annotate(f"{b[1]:.0f}", (b[1], i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize=8)
    ax.set_xlabel("decode tokens/s (GPT-2 small shape, 2 threads; same session)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=100)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engine", choices=["pocketlm", "litert-lm", "paired"], default="pocketlm")
    a = p.parse_args(argv)
    cfg = BenchConfig(a.runs, a.warmup, a.new_tokens, a.threads)
    from .bench_litert_lm import paired_worker, worker_litert_lm

    run = {"litert-lm": worker_litert_lm, "paired": paired_worker}.get(a.engine, worker)
    print(json.dumps(run(a.worker, cfg)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
