"""The registry of model families: which KerasHub causal LMs pocketlm converts, and which not.

Adding a family means adding its :class:`~.base.Family` to one of these modules (and a test
case); nothing else in pocketlm names a family.
"""

from __future__ import annotations

from typing import Any

from ..errors import UnsupportedModelError
from . import gemma, gpt, gpt_oss, llama, qwen
from .base import BPE, PER_LAYER_TUPLE, SPM, STACKED, Family, Refusal

FAMILIES: dict[str, Family] = {
    f.name: f for f in (*gpt.FAMILIES, *llama.FAMILIES, *qwen.FAMILIES, *gemma.FAMILIES,
                        *gpt_oss.FAMILIES)}

# KerasHub CausalLM classes pocketlm refuses, with the reason the user sees.
REFUSED: dict[str, Refusal] = {r.task: r for r in (
    Refusal("RWKV7CausalLM", "RWKV-7 is a recurrent model: its state update does not convert "
            "to builtin LiteRT ops (TensorListReserve)"),
    Refusal("Qwen3_5CausalLM", "Qwen 3.5 mixes attention with gated delta-net layers whose "
            "conv and recurrent state pocketlm's KV-cache contract cannot carry yet"),
    Refusal("Qwen3_5MoeCausalLM", "Qwen 3.5 MoE mixes attention with gated delta-net layers "
            "whose recurrent state pocketlm's KV-cache contract cannot carry yet"),
    Refusal("Gemma3nCausalLM", "Gemma 3n (per-layer inputs, head-major cache, audio/vision "
            "towers) is not supported yet"),
    Refusal("Gemma4CausalLM", "Gemma 4 is not supported yet"),
    Refusal("Gemma4AssistantCausalLM", "Gemma 4's assistant model drafts tokens for another "
            "model; it is not a standalone language model"),
    Refusal("PaliGemmaCausalLM", "PaliGemma is a vision-language model; pocketlm converts "
            "text-only language models"),
    Refusal("Blip2CausalLM", "BLIP-2 is a vision-language model; pocketlm converts text-only "
            "language models"),
    Refusal("PARSeqCausalLM", "PARSeq reads text from images; it is not a language model"),
)}


def get_family(name: str) -> Family:
    """The family called ``name`` (see ``pocketlm families``); raises UnsupportedModelError."""
    key = name.strip().lower().replace("-", "_")
    for family in FAMILIES.values():
        if key == family.name or key in family.aliases:
            return family
    raise UnsupportedModelError(f"unknown model family {name!r}; pocketlm supports: "
                                f"{', '.join(FAMILIES)}")


def family_for_task(task_class: str, backbone_config: dict[str, Any]) -> Family:
    """The family of a KerasHub causal LM, from its class name and backbone config.

    Gemma and Gemma 2 share KerasHub classes; Gemma 2 is told apart by its soft-caps and
    sliding windows. Raises UnsupportedModelError with the reason for anything else.
    """
    if task_class in REFUSED:
        raise UnsupportedModelError(f"{task_class}: {REFUSED[task_class].reason}")
    if task_class.endswith("Seq2SeqLM") or task_class.endswith("AudioToText"):
        raise UnsupportedModelError(f"{task_class} is an encoder-decoder model; pocketlm "
                                    "converts decoder-only language models")
    matches = [f for f in FAMILIES.values() if f.task == task_class]
    if not matches:
        raise UnsupportedModelError(
            f"{task_class} is not a KerasHub decoder pocketlm knows; supported: "
            f"{', '.join(sorted({f.task for f in FAMILIES.values()}))}")
    if len(matches) > 1 and task_class == "GemmaCausalLM":
        gemma2 = bool(backbone_config.get("use_sliding_window_attention")
                      or backbone_config.get("final_logit_soft_cap")
                      or backbone_config.get("attention_logit_soft_cap"))
        return FAMILIES["gemma2" if gemma2 else "gemma"]
    return matches[0]


__all__ = ["BPE", "FAMILIES", "PER_LAYER_TUPLE", "REFUSED", "SPM", "STACKED", "Family",
           "Refusal", "family_for_task", "get_family"]
