"""Hundreds of bad model files: each gives a clear error, and a crash never reaches us."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pocketlm.errors import ModelFileError, PocketLMError
from pocketlm.runtime.guard import verify_in_child

from .conftest import REPO
from .model_fuzz import build, make_cases


def run_cases(good, work, cases) -> tuple[dict[int, dict], list[int]]:
    """Run every case in worker processes; a worker that dies is restarted after its case."""
    results: dict[int, dict] = {}
    crashed: list[int] = []
    first = 0
    env = {**os.environ, "POCKETLM_WEIGHT_CACHE": "0"}
    while first < len(cases):
        proc = subprocess.run([sys.executable, "-m", "tests.model_fuzz", str(good), str(work),
                               str(first)], input=json.dumps(cases), capture_output=True,
                              text=True, cwd=REPO, env=env, timeout=900)
        started = first
        for line in proc.stdout.splitlines():
            if line.startswith("START "):
                started = int(line.split()[1])
            elif line.startswith("{"):
                r = json.loads(line)
                results[r["case"]] = r
        if proc.returncode == 0:
            break
        assert started not in results, proc.stderr[-2000:]
        crashed.append(started)  # the worker died on this case: go on after it
        first = started + 1
    return results, crashed


@pytest.mark.slow
def test_bad_model_files_give_clear_errors(tiny_models, tmp_path, record_property):
    good = tiny_models["dynamic-int8"]
    cases = make_cases()
    results, crashed = run_cases(good, tmp_path, cases)
    assert len(cases) >= 250
    assert len(results) + len(crashed) == len(cases)
    unexpected = {i: r for i, r in results.items() if r["outcome"] == "unexpected"}
    assert not unexpected, list(unexpected.items())[:5]
    for r in results.values():
        if r["outcome"] == "error":
            assert r["message"] and "\n" not in r["message"].strip()
    errors = sum(r["outcome"] == "error" for r in results.values())
    # Every case that changes structure or metadata must be refused (bit flips in weights
    # may load and run: they are still valid models).
    for i, case in enumerate(cases):
        if case["kind"] in ("empty", "truncate", "random", "metadata") and i in results:
            assert results[i]["outcome"] == "error", (case, results[i])
    # A file that crashes a process is refused cleanly by the guard, which we survive.
    for i in crashed:
        path = tmp_path / f"crash-{i}.tflite"
        path.write_bytes(build(cases[i], good.read_bytes()))
        with pytest.raises(ModelFileError, match="crashed the LiteRT interpreter|could not"):
            verify_in_child(path, remember=False)
    summary = {"cases": len(cases), "refused": errors, "loaded": len(results) - errors,
               "crashed_worker": len(crashed)}
    record_property("hostile_model_files", json.dumps(summary))
    print("hostile model files:", summary)


def test_guard_reports_a_crash_as_an_error(tmp_path, monkeypatch):
    """The guard turns a child killed by a signal into ModelFileError."""
    import signal
    import subprocess as sp

    path = tmp_path / "m.tflite"
    path.write_bytes(b"x" * 16)

    def killed(*args, **kwargs):
        return sp.CompletedProcess(args, -signal.SIGSEGV, "", "")

    monkeypatch.setattr(sp, "run", killed)
    with pytest.raises(ModelFileError, match=r"crashed the LiteRT interpreter \(SIGSEGV\)"):
        verify_in_child(path, remember=False)


def test_guard_passes_a_good_model_and_remembers(tiny_models):
    verify_in_child(tiny_models["float16"])
    verify_in_child(tiny_models["float16"])  # second time: from the cache


def test_guard_refuses_a_non_model(tmp_path):
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 4 + b"TFL3" + os.urandom(5000))
    with pytest.raises(PocketLMError):
        verify_in_child(bad, remember=False)
