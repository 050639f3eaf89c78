"""The on-device side: LiteRT + numpy + a tokenizer. Never imports TensorFlow or Keras."""

from .generation import Completion, complete, last_words, prepare_prompt, stream
from .loader import Inspection, inspect_model, load_model, load_tokenizer
from .sampling import Sampler

__all__ = ["Completion", "Inspection", "Sampler", "complete", "inspect_model", "last_words",
           "load_model", "load_tokenizer", "prepare_prompt", "stream"]
