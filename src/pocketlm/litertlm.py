"""Writing ``.litertlm`` bundles for Google's LiteRT-LM engine (``convert --format litertlm``).

A bundle holds, as LiteRT-LM reads them: an ``LlmMetadata`` proto (model type
``generic_model``, start and stop tokens, ``max_num_tokens``, prompt templates), the
tokenizer (an HF ``tokenizer.json`` for byte-level BPE families, built here with HF
``tokenizers`` from the vocabulary and merges so the ids are pocketlm's; the SentencePiece
model for SentencePiece families) and one ``PREFILL_DECODE`` TFLite model: pocketlm's own
contract-v2 file, which is LiteRT-LM's contract and still carries pocketlm's metadata, so
pocketlm's engine runs the same bundle (:mod:`pocketlm.runtime.bundle`). Built with
``litert-lm-builder`` (TensorFlow-free; part of ``pocketlm[convert]``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .contract import ContractInfo
from .errors import ConversionError
from .tokenizers import BytePairTokenizer, SentencePieceTokenizer, Tokenizer


def hf_tokenizer_json(tok: BytePairTokenizer) -> str:
    """``tokenizer.json`` for HF ``tokenizers`` (and LiteRT-LM) giving ``tok``'s ids: GPT-2's
    byte-level pre-tokenizer and decoder, the same vocabulary and ranked merges, and the
    special tokens as added tokens (never split, decoded to nothing)."""
    from tokenizers import AddedToken, decoders, models, pre_tokenizers
    from tokenizers import Tokenizer as HFTokenizer

    hf = HFTokenizer(models.BPE(vocab=dict(tok.vocab), merges=list(tok.merges),
                                ignore_merges=False, byte_fallback=False, fuse_unk=False))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(n, special=True, normalized=False)
                           for n in tok.special_tokens.names()])
    return hf.to_str()


def llm_metadata_text(info: ContractInfo, chat_template: str | None = None) -> str:
    """The ``LlmMetadata`` text proto. ``chat_template`` (a Jinja template, as a family's
    ``chat_template`` gives it) goes to ``jinja_prompt_template``; without one the prompt
    templates stay empty and LiteRT-LM feeds the text as it is."""
    lines = ["llm_model_type { generic_model {} }",
             f"max_num_tokens: {int(info.max_num_tokens)}",
             "supports_thinking: false", "supports_function_calling: false"]
    if info.add_start_token and info.start_token_id is not None:
        lines.append(f"start_token {{ token_ids {{ ids: {int(info.start_token_id)} }} }}")
    for t in dict.fromkeys([*info.stop_token_ids, info.end_token_id]):
        lines.append(f"stop_tokens {{ token_ids {{ ids: {int(t)} }} }}")
    if chat_template:
        lines.append(f"jinja_prompt_template: {json.dumps(chat_template)}")
    return "\n".join(lines) + "\n"


def require_builder() -> None:
    """Raise :class:`ConversionError` now, before minutes of conversion, when
    ``litert-lm-builder`` is missing."""
    import importlib.util

    if importlib.util.find_spec("litert_lm_builder") is None:
        raise ConversionError("--format litertlm needs litert-lm-builder: pip install "
                              "'pocketlm[convert]' (or litert-lm-builder)")


def export_bundle(authored, out_path: str | Path, cfg, progress=print):
    """Convert ``authored`` (an :class:`~pocketlm.authoring.AuthoredModel`) with
    :func:`pocketlm.export.export` and bundle it as ``out_path``; the export's result, with
    the bundle's path and size. The chat template, where the family defines one
    (``Family.chat_template``), becomes the bundle's ``jinja_prompt_template``."""
    import dataclasses

    from .export import export
    from .runtime.loader import inspect_model

    require_builder()
    out = Path(out_path)
    with tempfile.TemporaryDirectory(prefix="pocketlm-litertlm-") as tmp:
        result = export(authored, Path(tmp) / "model.tflite", cfg, progress=progress)
        info = inspect_model(result.path).contract
        assert info is not None
        template = getattr(authored.family, "chat_template", None)  # hook for chat templates
        progress(f"      bundling {out.name} (LlmMetadata, {authored.tokenizer.kind} "
                 "tokenizer, the model) with litert-lm-builder")
        size = write_bundle(result.path, info, authored.tokenizer, out,
                            template if isinstance(template, str) else None)
    return dataclasses.replace(result, path=out, size_bytes=size)


def write_bundle(tflite: Path, info: ContractInfo, tokenizer: Tokenizer, out: Path,
                 chat_template: str | None = None) -> int:
    """Write ``out`` (a ``.litertlm``) from a converted contract-v2 ``tflite``; its size in
    bytes. Raises :class:`ConversionError` for a tokenizer kind LiteRT-LM cannot take or a
    missing ``litert-lm-builder``."""
    try:
        from litert_lm_builder import LitertLmFileBuilder, TfLiteModelType
    except ImportError:
        raise ConversionError("--format litertlm needs litert-lm-builder: pip install "
                              "'pocketlm[convert]' (or litert-lm-builder)") from None
    from .export import write_atomically

    with tempfile.TemporaryDirectory(prefix="pocketlm-litertlm-") as tmp:
        folder = Path(tmp)
        meta = folder / "llm_metadata.pbtext"
        meta.write_text(llm_metadata_text(info, chat_template))
        builder = LitertLmFileBuilder()
        builder.add_llm_metadata(str(meta))
        if isinstance(tokenizer, BytePairTokenizer):
            path = folder / "tokenizer.json"
            path.write_text(hf_tokenizer_json(tokenizer))
            builder.add_hf_tokenizer(str(path))
        elif isinstance(tokenizer, SentencePieceTokenizer):
            path = folder / "tokenizer.spm"
            path.write_bytes(tokenizer.proto)
            builder.add_sentencepiece_tokenizer(str(path))
        else:
            raise ConversionError(f"LiteRT-LM takes byte-level BPE or SentencePiece "
                                  f"tokenizers, not {tokenizer.kind!r}")
        builder.add_tflite_model(str(tflite), TfLiteModelType.PREFILL_DECODE)
        bundle = folder / "model.litertlm"
        try:
            with open(bundle, "wb") as f:
                builder.build(f)
        except (ValueError, AssertionError) as exc:
            raise ConversionError(f"litert-lm-builder refused the bundle: {exc}") from None
        data = bundle.read_bytes()
    write_atomically(out, data)
    return len(data)
