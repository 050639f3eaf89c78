"""``--engine litert-lm`` never lets a bad bundle take the CLI down: the bundle is loaded in
LiteRT-LM in a child process first (``verify_in_child(engine="litert-lm")``), so a crash, a
hang or a refusal becomes one line on stderr and a non-zero exit, and a good bundle still
generates (checked once, then remembered).

Damaged bundles run through the real LiteRT-LM (skipped without it). LiteRT-LM refuses every
damaged bundle measured here rather than crash, so the crash and the hang come from a stand-in
``litert_lm`` package put first on the path of the processes the CLI starts, whose ``Engine``
kills its own process with SIGSEGV (or sleeps): the guard's reaction to a real signal."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pocketlm.errors import ContractError, ModelFileError
from pocketlm.runtime.guard import _key, _verified_dir, verify_in_child

from .conftest import REPO, needs_convert
from .tiny_bundles import damaged, model_section, tiny_bundle

pytestmark = needs_convert
needs_litert_lm = pytest.mark.skipif(importlib.util.find_spec("litert_lm") is None,
                                     reason="needs LiteRT-LM: pip install .[litert-lm]")
PROMPT = "I'm enjoying a walk"

STUB = textwrap.dedent('''
    """A stand-in for LiteRT-LM whose engine crashes, hangs or refuses (tests only)."""
    import os, signal, time

    class LogSeverity:
        ERROR = 3

    def set_min_log_severity(level):
        pass

    class Backend:
        @staticmethod
        def CPU(thread_count=1):
            return None

    class Engine:
        def __init__(self, *args, **kwargs):
            how = os.environ.get("STUB_LITERT_LM", "segv")
            if how == "segv":
                os.kill(os.getpid(), signal.SIGSEGV)
            if how == "hang":
                time.sleep(600)
            raise RuntimeError("stub refuses the bundle\\nsecond line of native detail")
''')


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    return tiny_bundle("gpt2", tmp_path_factory.mktemp("guard-bundle")).bundle


@pytest.fixture
def fresh(good, tmp_path) -> Path:
    """A copy of the good bundle no check has seen (a new path is a new key)."""
    out = tmp_path / "fresh.litertlm"
    shutil.copy(good, out)
    return out


@pytest.fixture
def stub_path(tmp_path) -> str:
    """A PYTHONPATH whose ``litert_lm`` is the stand-in."""
    (tmp_path / "stub" / "litert_lm").mkdir(parents=True)
    (tmp_path / "stub" / "litert_lm" / "__init__.py").write_text(STUB)
    return os.pathsep.join([str(tmp_path / "stub"), str(REPO / "src")])


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pocketlm.cli", *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, **(env or {})})


def _one_line_error(proc, *parts: str) -> str:
    assert proc.returncode > 0 and proc.stdout == "", (proc.returncode, proc.stdout)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketlm: error: "), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


def _flipped(good: Path, folder: Path, seed: int) -> Path:
    """The bundle with 8 bits flipped in its TFLite model."""
    data = bytearray(good.read_bytes())
    begin, end = model_section(good)
    rng = random.Random(seed)
    for _ in range(8):
        data[rng.randrange(begin, end)] ^= 1 << rng.randrange(8)
    out = folder / f"flipped-{seed}.litertlm"
    out.write_bytes(data)
    return out


@needs_litert_lm
def test_damaged_bundles_give_one_line_errors(good, tmp_path):
    lines = {}
    for name, path in damaged(good, tmp_path).items():
        lines[name] = _one_line_error(_cli("generate", str(path), PROMPT, "--engine",
                                           "litert-lm"))
        assert "Traceback" not in lines[name], name
        # Nothing was remembered as verified for a file that failed.
        assert not (_verified_dir() / _key(path, "litert-lm")).exists()
    # A cut header is ours to refuse; a bad model is LiteRT-LM's, with its reason.
    assert "outside the file" in lines["cut-model"]
    assert lines["zeroed-model-head"].endswith("Failed to load model from buffer: Invalid "
                                               "flatbuffer"), lines["zeroed-model-head"]


# LiteRT-LM's log when it refuses a bundle (recorded here with LiteRT-LM 0.18.1): its
# exception says only "Failed to create LiteRT-LM engine for FILE"; the reason is in the log.
REFUSALS = {
    "I0000 00:00:1.0 123 engine.cc:100] Loading\n"
    "E0000 00:00:1796030282.894547   26810 engine.cc:854] Failed to create engine: "
    "INVALID_ARGUMENT: ERROR: [third_party/odml/litert_lm/runtime/executor/"
    "llm_litert_compiled_model_executor_factory.cc:228]\n"
    "\u2514 ERROR: [third_party/odml/litert_lm/runtime/components/"
    "model_resources_litert_lm.cc:137]\n"
    "\u2514 Failed to load model from buffer\n\u2514 Invalid flatbuffer\n"
    "=== Source Location Trace: === \nthird_party/odml/litert/litert/cc/litert_macros.h:552\n":
        "INVALID_ARGUMENT: Failed to load model from buffer: Invalid flatbuffer",
    "E0000 00:00:1796030283.008523   21387 engine.cc:854] Failed to create engine: INTERNAL: "
    "Failed to parse LlmMetadata\n=== Source Location Trace: ===\n"
    "third_party/odml/litert_lm/runtime/components/model_resources_litert_lm.cc:234\n":
        "INTERNAL: Failed to parse LlmMetadata",
    "E0000 00:00:1.0 1 engine.cc:854] Failed to create engine: UNKNOWN: ERROR: [a.cc:236]\n"
    "\u2514 Failed to build TFL interpreter\nI0000 00:00:1.1 1 registry.cc:43] Destroy\n":
        "UNKNOWN: Failed to build TFL interpreter",
    "WARNING: [npu_registry.cc:34] NPU accelerator could not be loaded\n": None,
    "": None,
}


def test_litert_lm_refusals_are_read_from_its_log():
    from pocketlm.runtime.litert_lm_engine import native_reason

    for log, reason in REFUSALS.items():
        assert native_reason(log) == reason


@needs_litert_lm
def test_bit_flips_never_crash_the_cli(good, tmp_path):
    """Flipped bits may leave a bundle LiteRT-LM still runs (weights) or not: either it
    generates or it is refused in one line; the CLI never dies of a signal."""
    outcomes = {"ran": 0, "refused": 0}
    for seed in range(12):
        proc = _cli("generate", str(_flipped(good, tmp_path, seed)), PROMPT, "--engine",
                    "litert-lm", "--max-new-tokens", "4")
        assert proc.returncode >= 0, proc.returncode
        if proc.returncode == 0:
            assert proc.stdout.startswith(PROMPT)
            outcomes["ran"] += 1
        else:
            _one_line_error(proc)
            outcomes["refused"] += 1
    print("bit flips under --engine litert-lm:", outcomes)


@needs_litert_lm
def test_a_good_bundle_still_generates_and_is_checked_once(good):
    marker = _verified_dir() / _key(good, "litert-lm")
    marker.unlink(missing_ok=True)
    first = _cli("generate", str(good), PROMPT, "--engine", "litert-lm", "--max-new-tokens", "8")
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith(PROMPT) and len(first.stdout) > len(PROMPT) + 1
    assert marker.exists()  # remembered for LiteRT-LM ...
    assert not (_verified_dir() / _key(good, "pocketlm")).exists()  # ... not for pocketlm
    again = _cli("generate", str(good), PROMPT, "--engine", "litert-lm", "--max-new-tokens", "8")
    assert again.returncode == 0 and again.stdout == first.stdout
    # A changed file is checked again (the key holds its size and mtime).
    os.utime(good, ns=(good.stat().st_atime_ns, good.stat().st_mtime_ns + 1_000_000))
    assert not (_verified_dir() / _key(good, "litert-lm")).exists()


def test_a_crash_in_litert_lm_is_one_line(fresh, stub_path):
    env = {"PYTHONPATH": stub_path, "STUB_LITERT_LM": "segv"}
    line = _one_line_error(_cli("generate", str(fresh), PROMPT, "--engine", "litert-lm",
                                env=env), "crashed LiteRT-LM (SIGSEGV)", str(fresh))
    assert "Traceback" not in line
    # What the guard prevents: --trust loads the bundle in the CLI itself, which dies.
    trusted = _cli("generate", str(fresh), PROMPT, "--engine", "litert-lm", "--trust", env=env)
    assert trusted.returncode == -11
    # bench checks its bundles the same way before it starts measuring.
    _one_line_error(_cli("bench", str(fresh), "--engine", "litert-lm", "--runs", "1", env=env),
                    "crashed LiteRT-LM (SIGSEGV)")


def test_a_hang_and_a_refusal_in_litert_lm(fresh, stub_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", stub_path)
    monkeypatch.setenv("STUB_LITERT_LM", "hang")
    with pytest.raises(ModelFileError, match=r"in LiteRT-LM did not finish in 3s"):
        verify_in_child(fresh, engine="litert-lm", timeout=3)
    monkeypatch.setenv("STUB_LITERT_LM", "refuse")
    with pytest.raises(ContractError) as err:
        verify_in_child(fresh, engine="litert-lm")
    assert str(err.value).endswith("stub refuses the bundle")  # its first line only
    assert not (_verified_dir() / _key(fresh, "litert-lm")).exists()
    with pytest.raises(ValueError, match="unknown engine"):
        verify_in_child(fresh, engine="onnx")
