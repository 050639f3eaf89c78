"""GPT-style families: learned or rotary positions, LayerNorm, GELU MLPs, byte-level BPE."""

from .base import BPE, Family

_TINY = {"num_layers": 2, "num_heads": 4, "hidden_dim": 32, "intermediate_dim": 64}

GPT2 = Family(
    name="gpt2", title="GPT-2", task="GPT2CausalLM", backbone="GPT2Backbone",
    preprocessor="GPT2CausalLMPreprocessor", tokenizer="GPT2Tokenizer", tokenizer_kind=BPE,
    special_tokens=("<|endoftext|>",), fast_path=True,
    features="learned positions, LayerNorm, GELU MLP, tied LM head; a hand-written graph "
             "with fused QKV and a [1, heads, S, head_dim] cache (measured faster)",
    tiny={**_TINY, "dropout": 0.0, "max_sequence_length": 128})

OPT = Family(
    name="opt", title="OPT", task="OPTCausalLM", backbone="OPTBackbone",
    preprocessor="OPTCausalLMPreprocessor", tokenizer="OPTTokenizer", tokenizer_kind=BPE,
    special_tokens=("</s>", "<pad>"),
    features="learned positions (offset 2), LayerNorm, ReLU MLP, tied LM head",
    tiny={**_TINY, "dropout": 0.0, "max_sequence_length": 128})

GPT_NEOX = Family(
    name="gpt_neox", title="GPT-NeoX", task="GPTNeoXCausalLM", backbone="GPTNeoXBackbone",
    preprocessor="GPTNeoXCausalLMPreprocessor", tokenizer="GPTNeoXTokenizer",
    tokenizer_kind=BPE, special_tokens=("<|endoftext|>",), tier="should",
    features="partial rotary positions, parallel attention and MLP, untied LM head",
    tiny={**_TINY, "dropout": 0.0, "max_sequence_length": 128})

FALCON = Family(
    name="falcon", title="Falcon", task="FalconCausalLM", backbone="FalconBackbone",
    preprocessor="FalconCausalLMPreprocessor", tokenizer="FalconTokenizer", tokenizer_kind=BPE,
    special_tokens=("<|endoftext|>",), tier="should",
    features="ALiBi attention biases, parallel attention and MLP",
    tiny={"num_layers": 2, "num_attention_heads": 4, "hidden_dim": 32,
          "intermediate_dim": 64})

BLOOM = Family(
    name="bloom", title="Bloom", task="BloomCausalLM", backbone="BloomBackbone",
    preprocessor="BloomCausalLMPreprocessor", tokenizer="BloomTokenizer", tokenizer_kind=BPE,
    special_tokens=("<s>", "</s>", "<pad>"), tier="should",
    features="ALiBi attention biases, LayerNorm after the embedding",
    tiny={**_TINY, "dropout": 0.0})

FAMILIES = (GPT2, OPT, GPT_NEOX, FALCON, BLOOM)
