#!/usr/bin/env python3
"""pocketlm against its peers on the standard workload, in interleaved rounds of one session.

Each round runs ``pocketlm bench FILES --engine both`` (pocketlm's engine and LiteRT-LM on the
same .litertlm files), then each peer once (../shared/peers' ``measure.py``: llama.cpp's
llama-bench, ONNX Runtime). Ratios are taken within a round (the same minutes of a shared,
drifting machine) and their median over rounds is reported, with the min-max.

  PEERS_DIR=/tmp/peers scripts/bench_session.py OUTDIR FILE.litertlm ... [--rounds 3]

The peers must be set up first (their README: ``ONLY=none ./run_all.sh`` builds everything,
~15 min). Writes OUTDIR/session.json and OUTDIR/session.md; prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

# label -> peer command (run from PEERS_DIR with its venv's python)
PEERS = {
    "llama.cpp Q8_0": "peer_llamacpp.py --precision q8_0 --mode bench --repeats 5",
    "llama.cpp Q4_0": "peer_llamacpp.py --precision q4_0 --mode bench --repeats 5",
    "llama.cpp Q4_0 pure": "peer_llamacpp.py --precision q4_0-pure --mode bench --repeats 5",
    "llama.cpp f32": "peer_llamacpp.py --precision f32 --mode bench --repeats 5",
    "ONNX Runtime int8": "peer_onnxruntime.py --precision int8 --runner raw --repeats 3 --warmup 1",
}
# (our quantization, peer) pairs the speed targets name, with the target ratio
TARGETS = [("dynamic-int8", "llama.cpp Q8_0", 1.1), ("dynamic-int8", "LiteRT-LM", 1.0),
           ("int4", "llama.cpp Q4_0", 1.0)]


def run_ours(files: list[str], out: Path, threads: int) -> dict:
    cmd = [sys.executable, "-m", "pocketlm.cli", "bench", *files, "--engine", "both",
           "--runs", "3", "--warmup", "1", "--threads", str(threads), "--json", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def run_peer(peers_dir: Path, label: str, cmd: str, out: Path) -> float | None:
    py = str(peers_dir / "venv" / "bin" / "python")
    subprocess.run([py, "measure.py", "--procs", "1", "--max-attempts", "2", "--out", str(out),
                    "--label", label, "--", py, *cmd.split()], cwd=peers_dir,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    rows = [r for r in rows if r.get("label") == label and not r.get("failed")]
    return rows[-1].get("decode_tok_s") if rows else None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("files", nargs="+", help=".litertlm bundles (pocketlm convert --format "
                                             "litertlm), one per quantization")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    peers_dir = Path(os.environ.get("PEERS_DIR", "/tmp/peers"))
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    rounds = []
    for r in range(1, a.rounds + 1):
        report = run_ours(a.files, out / f"ours-{r}.json", a.threads)
        speed: dict[str, float] = {}
        for res in report["results"]:
            if "summary" not in res:
                continue
            name = ("LiteRT-LM " if res["engine"] == "litert-lm" else "") + res["quantization"]
            speed[name] = res["summary"]["decode_tok_s"]["median"]
            if res["engine"] == "pocketlm":
                speed[f"ttft {res['quantization']}"] = res["summary"]["ttft_10_s"]["median"]
                speed[f"rss {res['quantization']}"] = res["peak_rss_mb"]
                speed[f"file {res['quantization']}"] = res["file_mb"]
        for label, cmd in PEERS.items():
            got = run_peer(peers_dir, label, cmd, out / "peers.jsonl")
            if got:
                speed[label] = got
        rounds.append(speed)
        print(f"round {r}: " + ", ".join(f"{k} {v:.1f}" for k, v in speed.items()
                                         if not k.startswith(("ttft", "rss", "file"))),
              flush=True)
    lines = ["| ours | peer | target | ratio per round | median |", "|---|---|---:|---|---:|"]
    summary = []
    for q, peer, target in TARGETS:
        key = f"LiteRT-LM {q}" if peer == "LiteRT-LM" else peer
        ratios = [rd[q] / rd[key] for rd in rounds if q in rd and key in rd]
        if not ratios:
            continue
        med = statistics.median(ratios)
        summary.append({"ours": q, "peer": peer, "target": target, "ratios": ratios,
                        "median": med, "met": med >= target})
        lines.append(f"| {q} | {peer} | >= {target:.1f}x | "
                     f"{', '.join(f'{x:.2f}' for x in ratios)} | **{med:.2f}x** |")
    (out / "session.json").write_text(json.dumps({"rounds": rounds, "targets": summary},
                                                 indent=1))
    (out / "session.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
