"""GPT-OSS: mixture-of-experts MLP, attention sinks, alternating sliding windows."""

from .base import BPE, Family

GPT_OSS = Family(
    name="gpt_oss", title="GPT-OSS", task="GptOssCausalLM", backbone="GptOssBackbone",
    preprocessor="GptOssCausalLMPreprocessor", tokenizer="GptOssTokenizer", tokenizer_kind=BPE,
    special_tokens=("<|endoftext|>",), tier="should",
    features="RoPE, RMSNorm, mixture of experts, attention sinks, sliding windows",
    tiny={"num_layers": 2, "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 32,
          "intermediate_dim": 32, "num_experts": 4, "top_k": 2, "sliding_window": 8,
          "head_dim": 8})

FAMILIES = (GPT_OSS,)
