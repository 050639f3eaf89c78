"""Tiny ``.litertlm`` bundles for the app and guard tests: pocketlm's own (a tiny GPT-2 with
an HF tokenizer section, a tiny Llama with a SentencePiece one) and the kinds of bundle
pocketlm did not make or that were damaged on the way (another tool's model, two models, a
model without pocketlm's tokenizer entry, cut or garbled files).

Needs the conversion stack (``export``) and ``litert-lm-builder`` (part of it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

SEQ = 64
PREFILL = (16, 4)


@dataclass
class TinyBundle:
    tflite: Path
    bundle: Path
    tokenizer: object  # the authored model's pocketlm tokenizer


def tiny_bundle(family: str, folder: Path) -> TinyBundle:
    """``folder/FAMILY.tflite`` (float32, contract v2) and ``folder/FAMILY.litertlm``."""
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.litertlm import write_bundle
    from pocketlm.runtime.loader import inspect_model
    from pocketlm.tiny import tiny_causal_lm

    folder.mkdir(parents=True, exist_ok=True)
    authored = tiny_causal_lm(family, sequence_length=SEQ, seed=0)
    cfg = ExportConfig(sequence_length=SEQ, prefill_lengths=PREFILL, quantization="none")
    tflite = export(authored, folder / f"{family}.tflite", cfg, progress=lambda _m: None).path
    bundle = folder / f"{family}.litertlm"
    write_bundle(tflite, inspect_model(tflite).contract, authored.tokenizer, bundle)
    return TinyBundle(tflite, bundle, authored.tokenizer)


def without_metadata(tflite: Path, out: Path, *keys: str, replace: dict | None = None) -> Path:
    """A copy of ``tflite`` with the metadata entries ``keys`` removed and ``replace``'s
    set (another tool's model: no or another contract)."""
    from ai_edge_litert.tools import flatbuffer_utils

    from pocketlm.flatbuf import finalize

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(tflite.read_bytes()))
    model.metadata = [m for m in model.metadata or [] if m.name.decode() not in keys]
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    if replace:
        data = finalize(data, replace)
    out.write_bytes(data)
    return out


def build(out: Path, models: list[Path], *, sentencepiece: bytes | None = None,
          hf_json: str | None = None, metadata: str | None = None) -> Path:
    """A bundle written with ``litert-lm-builder`` from these parts, as another tool would."""
    import tempfile

    from litert_lm_builder import LitertLmFileBuilder, TfLiteModelType

    builder = LitertLmFileBuilder()
    with tempfile.TemporaryDirectory() as tmp:
        if metadata is not None:
            (Path(tmp) / "meta.pbtext").write_text(metadata)
            builder.add_llm_metadata(str(Path(tmp) / "meta.pbtext"))
        if sentencepiece is not None:
            (Path(tmp) / "tok.spm").write_bytes(sentencepiece)
            builder.add_sentencepiece_tokenizer(str(Path(tmp) / "tok.spm"))
        if hf_json is not None:
            (Path(tmp) / "tokenizer.json").write_text(hf_json)
            builder.add_hf_tokenizer(str(Path(tmp) / "tokenizer.json"))
        for model in models:
            builder.add_tflite_model(str(model), TfLiteModelType.PREFILL_DECODE)
        with open(out, "wb") as f:
            builder.build(f)
    return out


def model_section(bundle: Path) -> tuple[int, int]:
    """(begin, end) of the bundle's TFLite model bytes."""
    from pocketlm.runtime.bundle import TFLITE_MODEL, read_sections

    s = next(s for s in read_sections(bundle) if s.data_type == TFLITE_MODEL)
    return s.begin, s.end


def damaged(bundle: Path, folder: Path) -> dict[str, Path]:
    """Damaged copies of a good bundle, by name: cut (in the header, in the model),
    a garbled header, the model's first bytes zeroed, the model's end replaced by noise, the
    model's bytes all noise, random bytes after the magic."""
    data = bundle.read_bytes()
    begin, end = model_section(bundle)
    rng = random.Random(0)

    def noise(n: int) -> bytes:
        return bytes(rng.randrange(256) for _ in range(n))

    variants = {
        "cut-header": data[:40],
        "cut-model": data[:len(data) - 5000],
        "garbled-header": data[:32] + bytes(range(256)) * 8 + data[32 + 2048:],
        "zeroed-model-head": data[:begin] + bytes(64) + data[begin + 64:],
        "noisy-model-tail": data[:end - 8000] + noise(8000) + data[end:],
        "noise-model": data[:begin] + noise(end - begin) + data[end:],
        "magic-then-noise": b"LITERTLM" + noise(5000),
    }
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, blob in variants.items():
        out[name] = folder / f"{name}.litertlm"
        out[name].write_bytes(blob)
    return out
