"""One file for both engines: tiny models bundled as ``.litertlm`` run in Google's LiteRT-LM
and in pocketlm's engine, and both give Keras ``generate``'s greedy tokens.

A tiny GPT-2 (byte-level BPE, HF ``tokenizer.json`` in the bundle, hand-written graph), a
tiny Llama (RoPE, SentencePiece, the hand-written grouped-query graph: ``[1, kv_heads, S,
head_dim]`` caches) and a tiny Phi-3 (KerasHub's ``call_with_cache``: the flat cache layout)
are converted with contract v2 and bundled with ``litert-lm-builder``. pocketlm's engine must give exactly the token ids
of KerasHub's greedy ``generate`` (start token as KerasHub packs it); LiteRT-LM, whose Python
API returns text, must print exactly the text of those ids up to the first stop token.
"""

from __future__ import annotations

import importlib.util

import pytest

from pocketlm.config import GenerationConfig

from .conftest import needs_convert
from .test_families import PREFILL, PROMPT, SEQ, _keras_greedy

pytestmark = needs_convert
needs_litert_lm = pytest.mark.skipif(importlib.util.find_spec("litert_lm") is None,
                                     reason="needs LiteRT-LM: pip install .[litert-lm]")
# "NAME@parts": the tiny model converted in 2 parts and stitched (weights after the
# flatbuffer): LiteRT-LM must run such a file too.
FAMILIES = ("gpt2", "llama", "phi3", "gpt2@parts", "qwen@parts")
NEW = 16


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """family -> (authored model, .tflite, .litertlm)."""
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.litertlm import write_bundle
    from pocketlm.runtime.loader import inspect_model
    from pocketlm.tiny import tiny_causal_lm

    out = tmp_path_factory.mktemp("litertlm")
    built = {}
    for family in FAMILIES:
        name, _, parts = family.partition("@")
        authored = tiny_causal_lm(name, sequence_length=SEQ, seed=0)
        cfg = ExportConfig(sequence_length=SEQ, prefill_lengths=PREFILL, quantization="none",
                           parts=2 if parts else 0)
        tflite = export(authored, out / f"{family}.tflite", cfg, progress=lambda _m: None).path
        bundle = out / f"{family}.litertlm"
        write_bundle(tflite, inspect_model(tflite).contract, authored.tokenizer, bundle)
        built[family] = (authored, tflite, bundle)
    return built


def _until_stop(ids: list[int], stops: set[int]) -> list[int]:
    for i, t in enumerate(ids):
        if t in stops:
            return ids[:i]
    return ids


@pytest.mark.parametrize("family", FAMILIES)
def test_pocketlm_engine_runs_the_bundle_like_keras_generate(bundles, family):
    from pocketlm.runtime import complete, load_model

    authored, tflite, bundle = bundles[family]
    want, prompt_ids = _keras_greedy(authored, PROMPT, NEW)
    for path in (tflite, bundle):
        model = load_model(path, num_threads=1)
        done = complete(model, PROMPT, GenerationConfig(max_new_tokens=NEW,
                                                        stop_at_end_token=False))
        assert done.prompt.fed_ids == prompt_ids
        assert done.token_ids == want, path


@needs_litert_lm
@pytest.mark.parametrize("family", FAMILIES)
def test_litert_lm_runs_the_bundle_like_keras_generate(bundles, family, tmp_path):
    from pocketlm.runtime.litert_lm_engine import LiteRTLMEngine, Sampling

    authored, _, bundle = bundles[family]
    want, _ = _keras_greedy(authored, PROMPT, NEW)
    stops = set(authored.stop_token_ids) | {authored.end_token_id}
    expected = authored.tokenizer.decode(_until_stop(want, stops))
    with LiteRTLMEngine(bundle, num_threads=1) as engine:
        got = engine.generate(PROMPT, NEW)
        assert len(expected) >= 8  # a real continuation, not an immediate stop
        assert got == expected
        assert engine.generate(PROMPT, NEW) == expected  # a second session starts afresh
        # Sampling (no top-k limit: LiteRT-LM would read an unset top-k as greedy) samples,
        # and a seed makes it repeatable.
        sampled = Sampling(temperature=1.0, seed=7)
        first = engine.generate(PROMPT, NEW, sampled)
        assert first != expected and engine.generate(PROMPT, NEW, sampled) == first
    # Its XNNPACK cache went into pocketlm's cache folder, not beside the model.
    assert sorted(p.name for p in bundle.parent.iterdir()) == sorted(
        f"{f}.{ext}" for f in FAMILIES for ext in ("tflite", "litertlm"))


def test_bundle_tokenizer_matches_pocketlm_ids(bundles):
    """The HF tokenizer.json written into BPE bundles gives pocketlm's ids (SentencePiece
    bundles carry the proto itself)."""
    from tokenizers import Tokenizer

    from pocketlm.litertlm import hf_tokenizer_json

    authored = bundles["gpt2"][0]
    hf = Tokenizer.from_str(hf_tokenizer_json(authored.tokenizer))
    for text in (PROMPT, "  two  spaces\nand a line's end", "x" * 50, "Hello, world! 123"):
        ids = authored.tokenizer.encode(text)
        assert hf.encode(text).ids == ids
        assert hf.decode(ids, skip_special_tokens=True) == authored.tokenizer.decode(ids)


def _cli(*args: str):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "pocketlm.cli", *args], capture_output=True,
                          text=True, timeout=600)


def _one_line_error(proc, *parts: str) -> None:
    assert proc.returncode != 0 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pocketlm: error: "), proc.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@needs_litert_lm
def test_cli_converts_a_bundle_and_both_engines_print_the_same(tmp_path):
    out = tmp_path / "tiny-llama.litertlm"
    proc = _cli("convert", "--random", "tiny", "--family", "llama", "-q", "none",
                "--sequence-length", "64", "--prefill-lengths", "16,4", "--format",
                "litertlm", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes()[:8] == b"LITERTLM" and "wrote" in proc.stdout
    args = ("generate", str(out), PROMPT, "--max-new-tokens", "12")
    ours, theirs = _cli(*args), _cli(*args, "--engine", "litert-lm")
    assert ours.returncode == 0 and theirs.returncode == 0, (ours.stderr, theirs.stderr)
    assert ours.stdout.startswith(PROMPT) and len(ours.stdout) > len(PROMPT) + 4
    # pocketlm's engine ignores no stop token here either (stop_at_end_token is the default)
    assert theirs.stdout == ours.stdout
    info = _cli("info", str(out))
    assert info.returncode == 0 and "bundle:    .litertlm" in info.stdout
    assert "pocketlm.kv-cache v2" in info.stdout and "LiteRT-LM too" in info.stdout
    assert not list(tmp_path.glob("*xnnpack*"))  # LiteRT-LM's cache went elsewhere


def test_bad_bundles_are_refused_in_one_line(bundles, tmp_path):
    from litert_lm_builder import LitertLmFileBuilder, TfLiteModelType

    _, tflite, bundle = bundles["gpt2"]
    data = bundle.read_bytes()
    cases = {"truncated.litertlm": (data[:20], "not a .litertlm bundle"),
             "cut-header.litertlm": (data[:40], "truncated or corrupt"),
             "cut-sections.litertlm": (data[:4000], "outside the file"),
             "cut-model.litertlm": (data[:len(data) - 5000], "outside the file"),
             "garbage-header.litertlm": (data[:32] + bytes(range(256)) * 8 + data[32 + 2048:],
                                         "corrupt")}
    for name, (blob, message) in cases.items():
        (tmp_path / name).write_bytes(blob)
        _one_line_error(_cli("generate", str(tmp_path / name), "hi", "--trust"), message)
    # Two models (as a published multimodal bundle has): not one pocketlm can run.
    two = tmp_path / "two-models.litertlm"
    builder = LitertLmFileBuilder()
    for _ in range(2):
        builder.add_tflite_model(str(tflite), TfLiteModelType.PREFILL_DECODE)
    with open(two, "wb") as f:
        builder.build(f)
    _one_line_error(_cli("generate", str(two), "hi"), "cannot run", "--engine litert-lm")
    # A model without pocketlm's metadata: another tool's bundle.
    from pocketlm.flatbuf import finalize
    from pocketlm.contract import METADATA_KEY, TOKENIZER_METADATA_KEY
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(finalize(tflite.read_bytes(), {METADATA_KEY: b"{\"contract\": \"x\"}",
                                                    TOKENIZER_METADATA_KEY: b""}))
    other = tmp_path / "other.litertlm"
    builder = LitertLmFileBuilder()
    builder.add_tflite_model(str(bare), TfLiteModelType.PREFILL_DECODE)
    with open(other, "wb") as f:
        builder.build(f)
    _one_line_error(_cli("info", str(other)), "pocketlm did not make", "--engine litert-lm")
    # LiteRT-LM runs bundles only.
    _one_line_error(_cli("generate", str(tflite), "hi", "--engine", "litert-lm"),
                    "not a .litertlm bundle")


def test_bench_worker_and_decode_bytes_read_a_bundle(bundles):
    """`pocketlm bench` on a .litertlm: the worker times it and counts the bytes its decode
    reads from the bundle's TFLite section, as for the bare .tflite."""
    from pocketlm.bench import BenchConfig, worker
    from pocketlm.roofline import decode_weight_bytes

    _, tflite, bundle = bundles["gpt2"]
    assert decode_weight_bytes(bundle) == decode_weight_bytes(tflite) > 0
    report = worker(str(bundle), BenchConfig(runs=1, warmup=0, new_tokens=4, threads=1))
    assert report["decode_weight_mb"] * 2**20 == decode_weight_bytes(tflite)
    assert len(report["runs"]) == 1


@needs_litert_lm
def test_bench_both_engines_takes_the_ratio_in_one_process(bundles, monkeypatch, tmp_path):
    """`pocketlm bench FILE --engine both`: each engine in its own process for load, TTFT and
    RSS, and the decode ratio from both engines run alternately in one child process."""
    from pocketlm.bench import BenchConfig, bench, engine_ratios, to_markdown

    monkeypatch.setenv("POCKETLM_CACHE", str(tmp_path / "cache"))
    _, _, bundle = bundles["gpt2"]
    report = bench([str(bundle)], BenchConfig(runs=3, warmup=0, new_tokens=8, threads=1),
                   engines=("pocketlm", "litert-lm"))
    ours = next(r for r in report["results"] if r["engine"] == "pocketlm")
    one = ours["paired_with_litert_lm"]
    assert one["runs"] == 3 and len(one["litert_lm_tok_s"]) == 3
    ratios = [a / b for a, b in zip(one["pocketlm_tok_s"], one["litert_lm_tok_s"])]
    assert one["ratio"]["min"] == min(ratios) and one["ratio"]["max"] == max(ratios)
    assert all(x > 0 for x in one["pocketlm_tok_s"] + one["litert_lm_tok_s"])
    (name, separate, paired), = engine_ratios(report)
    assert name == bundle.name and separate > 0 and paired is one
    line = next(x for x in to_markdown(report).splitlines() if "as fast as LiteRT-LM" in x)
    assert f"{one['ratio']['median']:.2f}x" in line and "both in one process, 3 alternating" in line
