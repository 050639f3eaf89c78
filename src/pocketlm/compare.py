"""``pocketlm compare``: convert a model in every mode and write one decision table.

For each quantization: file size, speed (the bench workload), perplexity on a text, top-1
agreement and mean KL against the Keras float model, and how many greedy tokens match the
float model's before the first divergence. Output: markdown, JSON and a PNG chart.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .config import ExportConfig, Quantization
from .progress import Progress as ProgressCounter
from .quality import evaluate, greedy_match

Progress = Callable[[str], None]
REFERENCE = "keras-float32"


@dataclass
class CompareConfig:
    preset: str
    text: str
    out_dir: str
    modes: tuple[str, ...] = ("none", "float16", "dynamic-int8", "full-int8")
    holdout: float | None = None  # evaluate only the last fraction of the text
    window: int = 256
    stride: int = 128
    max_tokens: int | None = None  # cap on evaluated tokens (None: the whole text)
    greedy_prompts: int = 8
    greedy_tokens: int = 32
    bench_runs: int = 3
    calibration_text: str | None = None
    extra_models: dict[str, str] = field(default_factory=dict)  # label -> existing .tflite
    report_name: str = "compare"  # files written: <name>.md, <name>.json, <name>.png


def eval_ids(tokenizer, text: str, holdout: float | None, max_tokens: int | None) -> list[int]:
    from .textdata import split_holdout

    if holdout:
        text = split_holdout(text, holdout)[1]
    ids = tokenizer.encode(text)
    return ids[:max_tokens] if max_tokens else ids


def _greedy_keras(score, ids: list[int], n: int, window: int) -> list[int]:
    seq = list(ids)
    for _ in range(n):
        seq.append(int(np.argmax(score(seq[-window:])[-1])))
    return seq[len(ids):]


def _greedy_tflite(model, ids: list[int], n: int) -> list[int]:
    out = [int(np.argmax(model.start(ids)))]
    while len(out) < n:
        out.append(int(np.argmax(model.step(out[-1]))))
    return out


def run_compare(cfg: CompareConfig, progress: Progress = print) -> dict:
    from .authoring import keras_scorer, load_causal_lm
    from .bench import BenchConfig, bench
    from .export import export
    from .runtime import load_model
    from .textdata import read_text

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = read_text(cfg.text)
    authored = load_causal_lm(cfg.preset, cfg.window)
    name = Path(cfg.preset).name
    files: dict[str, Path] = {}
    for mode in cfg.modes:
        q = Quantization.parse(mode)
        path = out / f"{name}-{q.value}.tflite"
        if not path.exists():
            progress(f"converting {name} to {q.value}")
            export(authored, path, ExportConfig(sequence_length=cfg.window, quantization=q,
                                                calibration_text=cfg.calibration_text),
                   progress=lambda m: progress("  " + m))
        files[q.value] = path
    files.update({k: Path(v) for k, v in cfg.extra_models.items()})
    models = {label: load_model(p) for label, p in files.items()}
    ids = eval_ids(authored.tokenizer, text, cfg.holdout, cfg.max_tokens)
    seq = min(m.sequence_length for m in models.values())
    window = min(cfg.window, seq)
    stride = min(cfg.stride, window)
    progress(f"evaluating {len(ids):,} tokens (window {window}, stride {stride}) for "
             f"{REFERENCE} and {', '.join(models)}")
    scorers = {REFERENCE: keras_scorer(authored), **{k: m.score for k, m in models.items()}}
    # A bar on a terminal; on a pipe a line at 25, 50, 75 and 100%.
    tick = ProgressCounter("  scoring", unit="windows")
    quality = evaluate(ids, scorers, window, stride, reference=REFERENCE, progress=tick).results()
    tick.close()
    progress(f"greedy divergence: {cfg.greedy_prompts} prompts x {cfg.greedy_tokens} tokens")
    starts = np.linspace(0, max(0, len(ids) - 17), cfg.greedy_prompts).astype(int)
    prompts = [ids[s:s + 16] for s in starts]
    ref = [_greedy_keras(scorers[REFERENCE], p, cfg.greedy_tokens, window) for p in prompts]
    greedy = {label: float(np.mean([greedy_match(r, _greedy_tflite(m, p, cfg.greedy_tokens))
                                    for r, p in zip(ref, prompts)]))
              for label, m in models.items()}
    progress("measuring speed (bench workload)")
    speed = {r["model"]: r for r in bench([str(p) for p in files.values()],
                                          BenchConfig(runs=cfg.bench_runs))["results"]}
    rows = []
    float_ppl = quality[REFERENCE]["perplexity"]
    rows.append({"model": REFERENCE, "file_mib": None, "decode_tok_s": None, "ttft_10_ms": None,
                 **quality[REFERENCE], "ppl_change_pct": 0.0, "greedy_match": cfg.greedy_tokens})
    for label, path in files.items():
        s = speed.get(str(path), {}).get("summary", {})
        q = quality[label]
        rows.append({
            "model": label, "file_mib": path.stat().st_size / 2**20,
            "decode_tok_s": s.get("decode_tok_s", {}).get("median"),
            "ttft_10_ms": (s["ttft_10_s"]["median"] * 1000) if s else None,
            **q, "ppl_change_pct": 100 * (q["perplexity"] / float_ppl - 1),
            "greedy_match": greedy[label]})
    report = {"preset": cfg.preset, "text": cfg.text, "holdout": cfg.holdout,
              "eval_tokens": len(ids), "window": window, "stride": stride,
              "greedy_prompts": cfg.greedy_prompts, "greedy_tokens": cfg.greedy_tokens,
              "config": asdict(cfg), "rows": rows}
    (out / f"{cfg.report_name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{cfg.report_name}.md").write_text(to_markdown(report))
    chart(report, out / f"{cfg.report_name}.png")
    return report


def _fmt(v, spec: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def to_markdown(report: dict) -> str:
    lines = ["| model | file MiB | decode tok/s | TTFT 10 ms | perplexity | vs float | "
             "top-1 agree | mean KL | greedy match |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["rows"]:
        lines.append(
            f"| {r['model']} | {_fmt(r['file_mib'], '.1f')} | {_fmt(r['decode_tok_s'], '.1f')} | "
            f"{_fmt(r['ttft_10_ms'], '.1f')} | {_fmt(r['perplexity'], '.3f')} | "
            f"{_fmt(r['ppl_change_pct'], '+.2f')}% | "
            f"{_fmt(r['top1_agreement'] and 100 * r['top1_agreement'], '.1f')}"
            f"{'%' if r['top1_agreement'] is not None else ''} | "
            f"{_fmt(r['mean_kl'], '.4f')} | {_fmt(r['greedy_match'], '.1f')}/"
            f"{report['greedy_tokens']} |")
    holdout = f", last {report['holdout']:.0%} (held out)" if report["holdout"] else ""
    return "\n".join(lines) + (
        f"\n\nText: `{Path(report['text']).name}`{holdout}, {report['eval_tokens']:,} tokens; "
        f"sliding window {report['window']}, stride {report['stride']}. Agreement and KL are "
        f"against the Keras float32 model, position by position (teacher forcing); greedy "
        f"match is the mean number of tokens equal to the float model's before the first "
        f"divergence ({report['greedy_prompts']} prompts). Speed: the bench workload (10-token "
        f"prompt, 100 new tokens, 2 threads), medians.\n")


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in report["rows"] if r["file_mib"] is not None]
    labels = [r["model"] for r in rows]
    panels = [("file size (MiB)", [r["file_mib"] for r in rows]),
              ("decode tokens/s", [r["decode_tok_s"] or 0 for r in rows]),
              ("perplexity change vs float (%)", [r["ppl_change_pct"] for r in rows]),
              ("top-1 agreement (%)", [100 * (r["top1_agreement"] or 0) for r in rows])]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for ax, (title, values) in zip(axes, panels):
        bars = ax.bar(labels, values, color=["#4c72b0", "#55a868", "#c44e52", "#8172b2",
                                             "#ccb974", "#64b5cd"][:len(values)])
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelrotation=30, labelsize=8)
        for b, v in zip(bars, values):
            ax.annotate(f"{v:.1f}", (b.get_x() + b.get_width() / 2, b.get_height()),
                        ha="center", va="bottom", fontsize=8)
    fig.suptitle(f"{Path(report['preset']).name}: what each quantization costs "
                 f"({Path(report['text']).name}, {report['eval_tokens']:,} tokens)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
