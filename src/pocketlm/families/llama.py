"""Llama-style families: rotary positions, RMSNorm, SwiGLU MLPs, grouped-query attention."""

from .. import chat_template
from .base import BPE, SPM, Family

# 4 query heads sharing 2 KV heads: the tiny configs exercise GQA.
_TINY = {"num_layers": 2, "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 32,
         "intermediate_dim": 64}

LLAMA = Family(
    name="llama", title="Llama (SentencePiece)", task="LlamaCausalLM", backbone="LlamaBackbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="LlamaCausalLMPreprocessor", tokenizer="LlamaTokenizer", tokenizer_kind=SPM,
    special_tokens=("<s>", "</s>"),
    features="RoPE, RMSNorm, SwiGLU, GQA, untied LM head",
    tiny={**_TINY})

LLAMA3 = Family(
    name="llama3", title="Llama 3", task="Llama3CausalLM", backbone="Llama3Backbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="Llama3CausalLMPreprocessor", tokenizer="Llama3Tokenizer", tokenizer_kind=BPE,
    special_tokens=("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
                    "<|start_header_id|>", "<|end_header_id|>"),
    stop_tokens=("<|eot_id|>",), chat_template=chat_template.LLAMA3,
    features="RoPE with Llama 3.1 frequency scaling, RMSNorm, SwiGLU, GQA, byte-level BPE",
    # Frequency scaling on: wavelengths longer than the (tiny) pretraining length are scaled.
    tiny={**_TINY, "rope_frequency_adjustment_factor": 8.0, "rope_low_freq_factor": 1.0,
          "rope_high_freq_factor": 4.0, "rope_pretraining_sequence_length": 32})

MISTRAL = Family(
    name="mistral", title="Mistral", task="MistralCausalLM", backbone="MistralBackbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="MistralCausalLMPreprocessor", tokenizer="MistralTokenizer",
    tokenizer_kind=SPM, special_tokens=("<s>", "</s>"),
    chat_template=chat_template.MISTRAL,
    features="RoPE, RMSNorm, SwiGLU, GQA, sliding-window attention",
    # A window of 8 inside a 64-token cache: decoding passes it in every test.
    tiny={**_TINY, "sliding_window": 8})

MIXTRAL = Family(
    name="mixtral", title="Mixtral", task="MixtralCausalLM", backbone="MixtralBackbone",
    preprocessor="MixtralCausalLMPreprocessor", tokenizer="MixtralTokenizer",
    tokenizer_kind=SPM, special_tokens=("<s>", "</s>"), tier="should",
    chat_template=chat_template.MISTRAL,
    features="Mistral with a sparse mixture of experts (top-2 of N) MLP",
    tiny={**_TINY, "num_experts": 4, "top_k": 2, "sliding_window": 8})

PHI3 = Family(
    name="phi3", title="Phi-3", task="Phi3CausalLM", backbone="Phi3Backbone",
    preprocessor="Phi3CausalLMPreprocessor", tokenizer="Phi3Tokenizer", tokenizer_kind=SPM,
    special_tokens=("<s>", "<|endoftext|>"), stop_tokens=("<|end|>",),
    chat_template=chat_template.PHI3,
    features="RoPE with LongRoPE (su) scaling, RMSNorm, fused QKV, SwiGLU",
    # LongRoPE: separate short/long factor lists (head_dim / 2 each). KerasHub picks the
    # list per call from the call's last position, and its generate() seeds the cache with
    # the whole padded length, so its cached and full passes agree only up to
    # pretraining_sequence_length: the tiny model's (64) covers the tests' 64-token cache.
    tiny={**_TINY, "max_sequence_length": 128, "pretraining_sequence_length": 64,
          "rope_scaling_type": "su", "rope_scaling_short_factor": [1.0, 1.1, 1.2, 1.3],
          "rope_scaling_long_factor": [1.5, 2.0, 3.0, 4.0]})

SMOLLM3 = Family(
    name="smollm3", title="SmolLM3", task="SmolLM3CausalLM", backbone="SmolLM3Backbone",
    preprocessor="SmolLM3CausalLMPreprocessor", tokenizer="SmolLM3Tokenizer",
    tokenizer_kind=BPE,
    special_tokens=("<|end_of_text|>", "<|begin_of_text|>", "<think>", "</think>"),
    stop_tokens=("<|im_end|>",), chat_template=chat_template.SMOLLM3,
    features="RoPE on some layers only (NoPE every 4th), RMSNorm, SwiGLU, GQA",
    tiny={"num_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
          "hidden_dim": 32, "intermediate_dim": 64, "attention_bias": False,
          "attention_dropout": 0.0, "rope_layer_enabled_list": [True, True, True, False],
          "layer_types": ["full_attention"] * 4, "mlp_bias": False,
          "layer_norm_epsilon": 1e-6, "max_position_embeddings": 128,
          "rope_theta": 10000.0, "partial_rotary_factor": 1.0})

FAMILIES = (LLAMA, LLAMA3, MISTRAL, MIXTRAL, PHI3, SMOLLM3)
