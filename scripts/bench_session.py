#!/usr/bin/env python3
"""pocketlm against its peers on the standard workload: paired runs in one session.

This 2-core machine is shared and drifts: the same process measured 170 and 296 tok/s
minutes apart, so rounds several minutes long gave ratios from 0.8 to 1.2 for identical
speeds. Here each comparison is a series of *pairs*: wait until the machine is quiet, run
ours, run the peer right after (each in its own process, ~10 s apart), take the ratio of
that pair. The median over pairs is the reported ratio, with min and max.

Ours: ``python -m pocketlm.bench --worker FILE`` (pocketlm's engine, or ``--engine
litert-lm`` for LiteRT-LM on the same .litertlm). Peers: ../shared/peers' scripts (llama.cpp
through llama-bench, ONNX Runtime's raw loop), set up first as their README says.

  PEERS_DIR=/tmp/peers scripts/bench_session.py OUTDIR --int8 F.litertlm --int4 F.litertlm \
      [--pairs 5]

Writes OUTDIR/session.json (every run) and OUTDIR/session.md (the table); prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

PEERS = {
    "llama.cpp Q8_0": "peer_llamacpp.py --precision q8_0 --mode bench --repeats 5",
    "llama.cpp Q4_0": "peer_llamacpp.py --precision q4_0 --mode bench --repeats 5",
    "llama.cpp f32": "peer_llamacpp.py --precision f32 --mode bench --repeats 5",
    "ONNX Runtime int8": "peer_onnxruntime.py --precision int8 --runner raw --repeats 3",
}
# (our file, our engine, peer, target ratio): the speed targets, then context rows
COMPARISONS = [("int8", "pocketlm", "llama.cpp Q8_0", 1.1),
               ("int8", "pocketlm", "LiteRT-LM", 1.0),
               ("int4", "pocketlm", "llama.cpp Q4_0", 1.0),
               ("int4", "pocketlm", "LiteRT-LM", None),
               ("int8", "pocketlm", "ONNX Runtime int8", None),
               ("none", "pocketlm", "llama.cpp f32", None)]


def cpu_busy(window: float = 2.0) -> float:
    """Share of all CPUs busy over ``window`` seconds (/proc/stat)."""
    def sample() -> tuple[int, int]:
        vals = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = vals[3] + vals[4]
        return sum(vals) - idle, sum(vals)
    b0, t0 = sample()
    time.sleep(window)
    b1, t1 = sample()
    return (b1 - b0) / max(1, t1 - t0)


def wait_quiet(limit: float = 0.15, patience: float = 90.0) -> float:
    """Wait (up to ``patience`` s) until other processes use under ``limit`` of the CPUs."""
    end = time.time() + patience
    busy = cpu_busy()
    while busy >= limit and time.time() < end:
        busy = cpu_busy()
    return busy


def run_ours(path: str, engine: str, threads: int) -> dict:
    cmd = [sys.executable, "-m", "pocketlm.bench", "--worker", path, "--runs", "3",
           "--warmup", "1", "--threads", str(threads), "--engine", engine]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rep = json.loads(out.strip().splitlines()[-1])
    med = lambda k: statistics.median(r[k] for r in rep["runs"])  # noqa: E731
    return {"decode_tok_s": med("decode_tok_s"), "ttft_10_ms": med("ttft_10_s") * 1000,
            "peak_rss_mb": rep["peak_rss_mb"], "file_mb": rep["file_mb"]}


def run_peer(peers_dir: Path, cmd: str) -> dict:
    py = str(peers_dir / "venv" / "bin" / "python")
    out = subprocess.run([py, *cmd.split()], capture_output=True, text=True, cwd=peers_dir,
                         check=True, env={**os.environ, "PEERS_THREADS": "2"}).stdout
    rep = json.loads([x for x in out.splitlines() if x.startswith("{")][-1])
    return {"decode_tok_s": rep["decode_tok_s"], "file_mb": rep.get("model_file_mb")}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--int8", required=True, help="dynamic-int8 .litertlm bundle")
    ap.add_argument("--int4", required=True, help="int4 .litertlm bundle")
    ap.add_argument("--none", help="float32 .litertlm bundle (context row vs llama.cpp f32)")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    peers_dir = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
    files = {"int8": a.int8, "int4": a.int4, "none": a.none}
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    pairs: list[dict] = []
    for n in range(a.pairs):
        for ours, engine, peer, target in COMPARISONS:
            if not files.get(ours):
                continue
            busy = wait_quiet()
            mine = run_ours(files[ours], engine, a.threads)
            theirs = (run_ours(files[ours], "litert-lm", a.threads) if peer == "LiteRT-LM"
                      else run_peer(peers_dir, PEERS[peer]))
            rec = {"pair": n + 1, "ours": ours, "peer": peer, "busy_before": busy,
                   "mine": mine, "theirs": theirs,
                   "ratio": mine["decode_tok_s"] / theirs["decode_tok_s"]}
            pairs.append(rec)
            print(f"pair {n + 1} {ours} vs {peer}: {mine['decode_tok_s']:.1f} / "
                  f"{theirs['decode_tok_s']:.1f} = {rec['ratio']:.2f} "
                  f"(machine {busy:.0%} busy before)", flush=True)
            (out / "session.json").write_text(json.dumps({"pairs": pairs}, indent=1))
    lines = ["| ours | peer | target | ours tok/s (median) | peer tok/s (median) | "
             "ratio: median (min-max) over pairs | met |", "|---|---|---:|---:|---:|---:|---|"]
    summary = []
    for ours, _, peer, target in COMPARISONS:
        rows = [p for p in pairs if p["ours"] == ours and p["peer"] == peer]
        if not rows:
            continue
        ratios = [p["ratio"] for p in rows]
        med = statistics.median(ratios)
        row = {"ours": ours, "peer": peer, "target": target, "ratios": ratios, "median": med,
               "ours_tok_s": statistics.median(p["mine"]["decode_tok_s"] for p in rows),
               "peer_tok_s": statistics.median(p["theirs"]["decode_tok_s"] for p in rows)}
        summary.append(row)
        verdict = "-" if target is None else ("yes" if med >= target else "**no**")
        lines.append(f"| {ours} | {peer} | {'-' if target is None else f'>= {target}x'} | "
                     f"{row['ours_tok_s']:.1f} | {row['peer_tok_s']:.1f} | **{med:.2f}x** "
                     f"({min(ratios):.2f}-{max(ratios):.2f}) | {verdict} |")
    (out / "session.json").write_text(json.dumps({"pairs": pairs, "summary": summary},
                                                 indent=1))
    (out / "session.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
