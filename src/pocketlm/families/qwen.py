"""Qwen families: Llama-style blocks with QKV biases (Qwen 2) or QK-norm (Qwen 3), BPE."""

from .. import chat_template
from .base import BPE, Family

_TINY = {"num_layers": 2, "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 32,
         "intermediate_dim": 64}
_CHAT = ("<|im_start|>", "<|im_end|>")

QWEN = Family(
    name="qwen", title="Qwen 2 / 2.5", task="QwenCausalLM", backbone="QwenBackbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="QwenCausalLMPreprocessor", tokenizer="QwenTokenizer", tokenizer_kind=BPE,
    special_tokens=("<|endoftext|>", *_CHAT), stop_tokens=("<|im_end|>",),
    chat_template=chat_template.QWEN,
    features="RoPE, RMSNorm, SwiGLU, GQA, QKV biases, tied LM head",
    tiny={**_TINY, "tie_word_embeddings": True})

QWEN3 = Family(
    name="qwen3", title="Qwen 3", task="Qwen3CausalLM", backbone="Qwen3Backbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="Qwen3CausalLMPreprocessor", tokenizer="Qwen3Tokenizer", tokenizer_kind=BPE,
    special_tokens=("<|endoftext|>", *_CHAT), chat_template=chat_template.QWEN3,
    features="RoPE, RMSNorm, QK-norm, SwiGLU, GQA, explicit head_dim",
    tiny={**_TINY, "head_dim": 8})

QWEN_MOE = Family(
    name="qwen_moe", title="Qwen MoE", task="QwenMoeCausalLM", backbone="QwenMoeBackbone",
    preprocessor="QwenMoeCausalLMPreprocessor", tokenizer="QwenMoeTokenizer",
    tokenizer_kind=BPE, special_tokens=("<|endoftext|>", *_CHAT), tier="should",
    chat_template=chat_template.QWEN_MOE,
    features="Qwen 2 with a mixture-of-experts MLP and a shared expert",
    tiny={**_TINY, "moe_intermediate_dim": 16, "shared_expert_intermediate_dim": 32,
          "num_experts": 4, "top_k": 2})

QWEN3_MOE = Family(
    name="qwen3_moe", title="Qwen 3 MoE", task="Qwen3MoeCausalLM", backbone="Qwen3MoeBackbone",
    preprocessor="Qwen3MoeCausalLMPreprocessor", tokenizer="Qwen3MoeTokenizer",
    tokenizer_kind=BPE, special_tokens=("<|endoftext|>", *_CHAT), tier="should",
    chat_template=chat_template.QWEN3,
    features="Qwen 3 with a mixture-of-experts MLP",
    tiny={**_TINY, "head_dim": 8, "moe_intermediate_dim": 16, "num_experts": 4, "top_k": 2})

FAMILIES = (QWEN, QWEN3, QWEN_MOE, QWEN3_MOE)
