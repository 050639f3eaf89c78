"""Gemma families: scaled embeddings, RMSNorm (1 + w), GeGLU, SentencePiece."""

from .. import chat_template
from .base import PER_LAYER_TUPLE, SPM, Family

_TINY = {"num_layers": 2, "num_query_heads": 4, "num_key_value_heads": 2, "hidden_dim": 32,
         "intermediate_dim": 64, "head_dim": 8}
_SPECIAL = ("<bos>", "<eos>", "<pad>", "<start_of_turn>", "<end_of_turn>")

GEMMA = Family(
    name="gemma", title="Gemma", task="GemmaCausalLM", backbone="GemmaBackbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="GemmaCausalLMPreprocessor", tokenizer="GemmaTokenizer", tokenizer_kind=SPM,
    special_tokens=_SPECIAL, stop_tokens=("<end_of_turn>",), chat_template=chat_template.GEMMA,
    features="embeddings scaled by sqrt(hidden), RoPE, RMSNorm, GeGLU, MQA/GQA, tied head",
    tiny={**_TINY})

GEMMA2 = Family(
    name="gemma2", title="Gemma 2", task="GemmaCausalLM", backbone="GemmaBackbone",
    fast_path=True,  # pocketlm.graph_decoder's hand-written graph
    preprocessor="GemmaCausalLMPreprocessor", tokenizer="GemmaTokenizer", tokenizer_kind=SPM,
    special_tokens=_SPECIAL, stop_tokens=("<end_of_turn>",), chat_template=chat_template.GEMMA,
    features="Gemma with attention and final-logit soft-caps, post-norms, and sliding-window "
             "attention on alternate layers",
    tiny={**_TINY, "query_head_dim_normalize": False, "use_post_ffw_norm": True,
          "use_post_attention_norm": True, "attention_logit_soft_cap": 50.0,
          "final_logit_soft_cap": 30.0, "use_sliding_window_attention": True,
          "sliding_window_size": 8})

GEMMA3 = Family(
    name="gemma3", title="Gemma 3 (text)", task="Gemma3CausalLM", backbone="Gemma3Backbone",
    preprocessor="Gemma3CausalLMPreprocessor", tokenizer="Gemma3Tokenizer", tokenizer_kind=SPM,
    special_tokens=(*_SPECIAL, "<img>", "<start_of_image>", "<end_of_image>"),
    stop_tokens=("<end_of_turn>",), chat_template=chat_template.GEMMA, cache=PER_LAYER_TUPLE,
    features="Gemma with QK-norm, local (sliding) and global layers with their own RoPE "
             "bases; a (k, v) cache tuple per layer",
    tiny={**_TINY, "image_size": 16, "use_sliding_window_attention": True,
          "sliding_window_size": 8, "global_rope_scaling_factor": 8.0})

FAMILIES = (GEMMA, GEMMA2, GEMMA3)
