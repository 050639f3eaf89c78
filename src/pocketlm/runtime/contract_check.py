"""Checking a pocketlm KV-cache file against its own metadata, before LiteRT sees it."""

from __future__ import annotations

from pathlib import Path

from ..contract import (DECODE, INPUT_POS, LAST_INDEX, LAYOUT_HEADS_FIRST, LOGITS,
                        READABLE_VERSIONS, TOKENS, ContractInfo, cache_names, input_pos_shape)
from ..errors import ContractError


def validate_contract(path: Path, info: ContractInfo) -> None:
    """Check the file's signatures against what its metadata claims, before LiteRT sees it,
    so metadata that lies about shapes is an error, not a crash or silent garbage."""
    from ..flatbuf import summarize

    try:
        layers, seq, vocab = int(info.num_layers), int(info.sequence_length), int(
            info.vocabulary_size)
        cache = [int(x) for x in info.cache_shape]
    except (TypeError, ValueError):
        raise ContractError(f"{path}: the pocketlm metadata has no usable model shape") from None
    if not cache or not layers or not vocab:
        raise ContractError(f"{path}: the pocketlm metadata has no usable model shape")
    _check_model_config(path, info, layers, vocab, cache)
    if not (0 < layers <= 1024 and 0 < seq <= 1 << 20 and 0 < vocab <= 1 << 22
            and len(cache) == 4 and all(0 < x <= 1 << 20 for x in cache) and seq in cache):
        raise ContractError(f"{path}: the pocketlm metadata declares an impossible shape")
    for name, token in (("end", info.end_token_id), ("start", info.start_token_id)):
        if token is None and name == "start":
            continue
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < vocab:
            raise ContractError(f"{path}: the pocketlm metadata has an invalid {name} token "
                                f"{token!r}")
    if not isinstance(info.stop_token_ids, list) or not all(
            isinstance(t, int) and 0 <= t < vocab for t in info.stop_token_ids):
        raise ContractError(f"{path}: the pocketlm metadata has invalid stop tokens")
    if not isinstance(info.prefill, dict) or not all(
            isinstance(k, str) and isinstance(v, int) and 0 < v <= seq
            for k, v in info.prefill.items()):
        raise ContractError(f"{path}: the pocketlm metadata lists invalid chunk signatures")
    version = info.contract_version
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ContractError(f"{path}: unknown contract version {version!r}")
    sigs = summarize(path).signatures
    caches = {n: cache for n in cache_names(layers)}
    for name, tokens in info.signature_tokens().items():
        sig = sigs.get(name)
        if sig is None:
            raise ContractError(f"{path} says it has a {name!r} signature but does not")
        want = {TOKENS: [1, tokens], INPUT_POS: input_pos_shape(version, tokens), **caches}
        if version == 1:
            want[LAST_INDEX] = [1]
        got = {n: t.shape for n, t in sig.inputs.items()}
        if got != want:
            wrong = [n for n in sorted(set(want) | set(got)) if want.get(n) != got.get(n)][:4]
            raise ContractError(f"{path}: signature {name!r} does not match its metadata "
                                f"(inputs {', '.join(wrong)} differ)")
        outs = {n: t.shape for n, t in sig.outputs.items()}
        if any(outs.get(n) != shape for n, shape in caches.items()):
            raise ContractError(f"{path}: signature {name!r} does not return its caches "
                                "under their input names")
        logits = [1, vocab] if version == 1 else [1, 1, vocab]
        if (version == 1 or name == DECODE) and outs.get(LOGITS) != logits:
            raise ContractError(f"{path}: signature {name!r} does not return {logits} logits")


def _check_model_config(path: Path, info: ContractInfo, layers: int, vocab: int,
                        cache: list[int]) -> None:
    """The backbone config (``model``) must agree with the typed fields the runtime reads:
    metadata that contradicts itself was edited or damaged, and is refused, not trusted."""
    model = info.model
    if not isinstance(model, dict):
        raise ContractError(f"{path}: the pocketlm metadata has no model config")
    want = {"num_layers": layers, "vocabulary_size": vocab}
    if info.cache_layout == LAYOUT_HEADS_FIRST and "num_key_value_heads" in model:
        # Grouped-query families (hand-written graph): the cache holds the KV heads, and the
        # head size where the config sets one (else it is hidden_dim / query heads).
        want["num_key_value_heads"] = cache[1]
        if model.get("head_dim") is not None:
            want["head_dim"] = cache[3]
    elif info.cache_layout == LAYOUT_HEADS_FIRST:  # GPT-2: heads and head size are in the cache
        want.update(num_heads=cache[1], hidden_dim=cache[1] * cache[3])
    for key, value in want.items():
        if key in model and (not isinstance(model[key], int) or isinstance(model[key], bool)
                             or model[key] != value):
            raise ContractError(f"{path}: the pocketlm metadata contradicts itself ({key} "
                                f"{model[key]!r} in the model config, {value} in the file)")
