"""Open a .tflite file, work out what kind of language model it is, and load it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import CONTRACT_NAME, CONTRACT_VERSION, ContractInfo
from ..errors import ContractError, TokenizerError
from ..flatbuf import ModelSummary, summarize
from ..tokenizer import BPETokenizer
from .kvcache import KVCacheModel, contract_from_metadata


@dataclass
class Inspection:
    """What a file is, before any interpreter is created."""

    path: Path
    kind: str  # "pocketlm-kv-cache" or "unknown"
    summary: ModelSummary
    contract: ContractInfo | None

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
    """Read the flatbuffer (no interpreter) and classify it."""
    p = Path(path)
    summary = summarize(p)
    contract = contract_from_metadata(summary.metadata)
    kind = "unknown"
    if contract is not None and contract.contract == CONTRACT_NAME:
        if contract.contract_version > CONTRACT_VERSION:
            raise ContractError(
                f"{p} uses contract version {contract.contract_version}; this pocketlm reads "
                f"up to {CONTRACT_VERSION}: upgrade pocketlm")
        kind = KVCacheModel.kind
    return Inspection(p, kind, summary, contract)


def load_tokenizer(spec: str | Path) -> BPETokenizer:
    """A tokenizer from ``gpt2``, a KerasHub preset directory, or ``VOCAB.json,MERGES.txt``."""
    text = str(spec)
    if text == "gpt2":
        return BPETokenizer.gpt2()
    if "," in text:
        vocab, merges = text.split(",", 1)
        return BPETokenizer.from_files(vocab, merges)
    p = Path(text)
    for folder in (p / "assets" / "tokenizer", p):
        if (folder / "vocabulary.json").is_file() and (folder / "merges.txt").is_file():
            return BPETokenizer.from_files(folder / "vocabulary.json", folder / "merges.txt")
    raise TokenizerError(f"no tokenizer at {text}: give 'gpt2', a KerasHub preset directory, "
                         "or VOCAB.json,MERGES.txt")


def load_model(path: str | Path, tokenizer: str | Path | BPETokenizer | None = None,
               num_threads: int = 2) -> KVCacheModel:
    """Load any compatible .tflite language model for generation."""
    found = inspect_model(path)
    tok = load_tokenizer(tokenizer) if isinstance(tokenizer, (str, Path)) else tokenizer
    if found.kind == KVCacheModel.kind:
        assert found.contract is not None
        return KVCacheModel(found.path, found.contract, found.summary.metadata, tok, num_threads)
    raise ContractError(f"{found.path} is not a compatible language model: it has "
                        f"{found.describe_signatures()}")
