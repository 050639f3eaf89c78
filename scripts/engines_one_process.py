#!/usr/bin/env python3
"""pocketlm's engine and LiteRT-LM on one .litertlm bundle, both loaded in ONE process,
alternating 100-token greedy runs on the standard prompt; prints the paired ratio.

Separate processes on this shared machine drift apart (the same worker measured 42 and 29
tok/s on the Qwen 1.5B bundle one minute apart), so engine-against-engine ratios are taken
here, run by run, under the same conditions. Needs pocketlm[litert-lm].

  python scripts/engines_one_process.py FILE.litertlm [ROUNDS]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np


def main() -> int:
    import litert_lm

    from pocketlm.bench import PROMPT_TEXT, prompt_ids
    from pocketlm.runtime import load_model
    from pocketlm.runtime.litert_lm_engine import engine_cache_dir

    path, rounds = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 12
    litert_lm.set_min_log_severity(litert_lm.LogSeverity.ERROR)
    engine = litert_lm.Engine(path, backend=litert_lm.Backend.CPU(thread_count=2),
                              cache_dir=str(engine_cache_dir(Path(path))),
                              enable_benchmark=True)
    greedy = litert_lm.SamplerConfig(top_k=1, temperature=1.0, seed=0)
    model = load_model(path, num_threads=2)
    ours, theirs = [], []
    for r in range(rounds):
        token = int(np.argmax(model.start(prompt_ids(model))))
        t0 = time.perf_counter()
        for _ in range(99):
            token = int(np.argmax(model.step(token)))
        ours.append(99 / (time.perf_counter() - t0))
        session = engine.create_session(apply_prompt_template=False, sampler_config=greedy,
                                        max_output_tokens=100)
        session.run_prefill([PROMPT_TEXT])
        session.run_decode()
        theirs.append(session.get_benchmark_info().last_decode_tokens_per_second)
        session.close()
        print(f"run {r + 1}: pocketlm {ours[-1]:.1f} tok/s, LiteRT-LM {theirs[-1]:.1f} tok/s",
              flush=True)
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"pocketlm {statistics.median(ours):.1f} tok/s, LiteRT-LM "
          f"{statistics.median(theirs):.1f} tok/s; paired ratio median "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
