"""Open a .tflite file, work out what kind of language model it is, and load it.

Kinds, tried in this order:
  * ``pocketlm-kv-cache``: pocketlm's own prefill/decode files (metadata says so);
  * ``android-string``: the recipe's string-in, string-out model (pocketlm's metadata says
    so, or a signature takes one string and returns one): needs a Flex-capable TensorFlow;
  * ``keras-litert``: Keras' ``model.export(format="litert")`` of a causal LM
    (``token_ids``, ``padding_mask`` -> logits, no cache): recomputes the window each step;
  * ``unknown``: anything else; loading it lists what the file has.

A ``.litertlm`` bundle (LiteRT-LM's container) is opened through its one TFLite model
(:mod:`pocketlm.runtime.bundle`): pocketlm's own bundles run here (a bundle whose model lost
pocketlm's tokenizer entry uses the bundle's SentencePiece section); others are refused with
what they hold (``--engine litert-lm`` runs them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..contract import CONTRACT_NAME, CONTRACT_VERSION, TOKENIZER_METADATA_KEY, ContractInfo
from .bundle import SP_TOKENIZER, is_bundle, read_section, read_sections, tflite_path
from ..errors import ContractError, ModelFileError, TokenizerError
from ..flatbuf import ModelSummary, summarize
from ..tokenizer import BPETokenizer
from ..tokenizers import SentencePieceTokenizer, SpecialTokens
from ..tokenizers import Tokenizer, tokenizer_from_bytes
from .kvcache import KVCacheModel, contract_from_metadata
from .recipe import (ANDROID_CONTRACT_NAME, ANDROID_CONTRACT_VERSION, RecipeModel,
                     string_signature)
from .windowed import WindowedModel, windowed_signature

KINDS = (KVCacheModel.kind, RecipeModel.kind, WindowedModel.kind)
EXPECTED = ("pocketlm runs its own KV-cache files (prefill/decode signatures), string-in, "
            "string-out models (one string input, one string output), and Keras "
            "model.export(format='litert') causal LMs (token_ids, padding_mask -> logits)")


@dataclass
class Inspection:
    """What a file is, before any interpreter is created."""

    path: Path
    kind: str  # one of KINDS, or "unknown"
    summary: ModelSummary
    contract: ContractInfo | None
    bundle: Path | None = None  # the .litertlm file ``path`` was unpacked from

    def describe_signatures(self) -> str:
        if not self.summary.signatures:
            return "no signatures"
        parts = []
        for sig in self.summary.signatures.values():
            ins = ", ".join(f"{n}{t.shape}:{t.dtype}" for n, t in sig.inputs.items())
            outs = ", ".join(f"{n}{t.shape}:{t.dtype}" for n, t in sig.outputs.items())
            parts.append(f"{sig.name}({ins}) -> ({outs})")
        return "; ".join(parts)


def inspect_model(path: str | Path) -> Inspection:
    """Read the flatbuffer (no interpreter) and classify it. Raises :class:`ModelFileError`
    for a file that is not a readable model, :class:`ContractError` for a newer contract or
    a bundle pocketlm did not make (messages name ``path``, never the unpacked copy)."""
    p = Path(path)
    bundle = None
    if p.is_file() and is_bundle(p):
        bundle, p = p, tflite_path(p)
    try:
        summary = summarize(p)
        contract = contract_from_metadata(summary.metadata)
    except ModelFileError as exc:
        if bundle is None:
            raise
        # The copy lives in pocketlm's cache folder: the user knows the bundle.
        raise type(exc)(str(exc).replace(str(p), f"the TFLite model in {bundle}")) from None
    if bundle is not None and (contract is None or contract.contract != CONTRACT_NAME):
        raise ContractError(f"{bundle} is a .litertlm bundle that pocketlm did not make (its "
                            "model has no pocketlm metadata, so pocketlm's engine cannot run "
                            "it): use --engine litert-lm")
    if bundle is not None and TOKENIZER_METADATA_KEY not in summary.metadata:
        blob = bundle_tokenizer(bundle, contract)
        if blob is not None:
            summary.metadata[TOKENIZER_METADATA_KEY] = blob
    kind = "unknown"
    # Contracts pocketlm writes: name -> (newest version it reads, kind of runner).
    known = {CONTRACT_NAME: (CONTRACT_VERSION, KVCacheModel.kind),
             ANDROID_CONTRACT_NAME: (ANDROID_CONTRACT_VERSION, RecipeModel.kind)}
    if contract is not None and contract.contract in known:
        newest, kind = known[contract.contract]
        if contract.contract_version > newest:
            raise ContractError(
                f"{p} uses {contract.contract} version {contract.contract_version}; this "
                f"pocketlm reads up to {newest}: upgrade pocketlm")
    elif string_signature(summary) is not None:
        kind = RecipeModel.kind
    elif windowed_signature(summary) is not None:
        kind = WindowedModel.kind
    return Inspection(p, kind, summary, contract, bundle)


def bundle_tokenizer(bundle: Path, info: ContractInfo) -> bytes | None:
    """The bundle's own SentencePiece section as a ``pocketlm.tokenizer`` entry, for a
    pocketlm model whose metadata lost its tokenizer; the contract's start, end and stop ids
    name its special tokens. None when there is no such section (an HF tokenizer section is
    not read: pocketlm's BPE needs its own vocabulary and merges). Raises
    :class:`TokenizerError` when the section is not a SentencePiece model."""
    section = next((s for s in read_sections(bundle) if s.data_type == SP_TOKENIZER), None)
    if section is None:
        return None
    proto = read_section(bundle, section)
    try:
        plain = SentencePieceTokenizer(proto)  # its pieces name the contract's ids

        def piece(i: int | None) -> str | None:
            return plain.id_to_token(int(i)) if i is not None else None

        special = SpecialTokens(start=piece(info.start_token_id), end=piece(info.end_token_id),
                                stop=tuple(t for t in map(piece, info.stop_token_ids) if t))
        return SentencePieceTokenizer(proto, special).to_bytes()
    except TokenizerError as exc:
        raise TokenizerError(f"{bundle}: its SentencePiece tokenizer section cannot be "
                             f"used: {exc}") from None


def load_tokenizer(spec: str | Path) -> Tokenizer:
    """A tokenizer from ``gpt2``, a KerasHub preset directory (BPE or SentencePiece),
    ``VOCAB.json,MERGES.txt``, or a SentencePiece model file."""
    text = str(spec)
    if text == "gpt2":
        return BPETokenizer.gpt2()
    if "," in text:
        vocab, merges = text.split(",", 1)
        return BPETokenizer.from_files(vocab, merges)
    p = Path(text)
    if p.is_file() and p.suffix in (".spm", ".model"):
        return SentencePieceTokenizer.from_file(p)
    for folder in (p / "assets" / "tokenizer", p):
        if (folder / "vocabulary.json").is_file() and (folder / "merges.txt").is_file():
            return BPETokenizer.from_files(folder / "vocabulary.json", folder / "merges.txt")
        if (folder / "vocabulary.spm").is_file():
            return SentencePieceTokenizer.from_file(folder / "vocabulary.spm")
    raise TokenizerError(f"no tokenizer at {text}: give 'gpt2', a KerasHub preset directory, "
                         "VOCAB.json,MERGES.txt, or a SentencePiece .spm/.model file")


def load_model(path: str | Path, tokenizer: str | Path | Tokenizer | None = None,
               num_threads: int = 2) -> KVCacheModel | RecipeModel | WindowedModel:
    """Load any compatible .tflite language model for generation (see the module docstring).

    ``tokenizer`` overrides the file's own; files that carry none need it.
    """
    found = inspect_model(path)
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    if found.kind == KVCacheModel.kind:
        assert found.contract is not None
        return KVCacheModel(found.path, found.contract, found.summary.metadata, tok, num_threads)
    if found.kind == RecipeModel.kind:
        return RecipeModel(found.path, found.summary, found.contract, tok, num_threads)
    if found.kind == WindowedModel.kind:
        if tok is None and TOKENIZER_METADATA_KEY in found.summary.metadata:
            tok = tokenizer_from_bytes(found.summary.metadata[TOKENIZER_METADATA_KEY])
        return WindowedModel(found.path, found.summary, tok, num_threads)
    raise ContractError(f"{found.path} is not a compatible language model: it has "
                        f"{found.describe_signatures()}. {EXPECTED}")
