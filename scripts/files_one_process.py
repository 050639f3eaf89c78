#!/usr/bin/env python3
"""Two or more model files loaded in ONE process, alternating 100-token greedy runs on the
standard prompt; prints each file's decode speed and its paired ratio to the first file,
and whether it chose the same 100 tokens. For graph changes worth a few percent, which
separate processes on this shared machine cannot resolve.

  python scripts/files_one_process.py ROUNDS BEFORE.tflite AFTER.tflite [...]
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np


def main() -> int:
    from pocketlm.bench import prompt_ids
    from pocketlm.runtime import load_model

    rounds, paths = int(sys.argv[1]), sys.argv[2:]
    models = [load_model(p, num_threads=2) for p in paths]
    speed: list[list[float]] = [[] for _ in models]
    tokens: list[list[int]] = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            token = int(np.argmax(model.start(prompt_ids(model))))
            out = [token]
            t0 = time.perf_counter()
            for _ in range(99):
                token = int(np.argmax(model.step(token)))
                out.append(token)
            speed[i].append(99 / (time.perf_counter() - t0))
            tokens[i] = out
    for i, path in enumerate(paths):
        ratio = statistics.median(a / b for a, b in zip(speed[i], speed[0]))
        print(f"{path}: {statistics.median(speed[i]):.1f} tok/s, paired ratio to the first "
              f"{ratio:.3f}, same tokens as the first: {tokens[i] == tokens[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
