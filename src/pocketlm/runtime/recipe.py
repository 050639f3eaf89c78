"""Running the recipe's string model (prompt in, prompt + continuation out) from Python.

The file holds KerasHub's tokenizer and the whole decode loop, so it needs Select-TF (Flex)
ops. No current wheel of ai-edge-litert or TensorFlow ships the Flex delegate; tensorflow
2.19.1 (with tensorflow-text 2.19.0 imported, which registers the TF-text kernels Flex calls)
is the newest whose ``tf.lite.Interpreter`` still runs them. So this module imports
TensorFlow lazily, only when such a file is loaded, and says exactly what to install when it
cannot run one.

The model samples inside its graph (greedy in files pocketlm writes) and returns text, not
logits. To reuse the shared completion loop (context window, streaming, max_new_tokens,
stats) :class:`RecipeModel` runs the graph once in ``start`` and then replays the
continuation, re-tokenized, as one-hot logits.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..contract import TOKENIZER_METADATA_KEY, ContractInfo
from ..errors import ContractError, RuntimeFailure
from ..flatbuf import ModelSummary
from ..tokenizer import BPETokenizer
from ..tokenizers import Tokenizer, tokenizer_from_bytes

# The contract name pocketlm writes into the metadata of the files it exports this way.
ANDROID_CONTRACT_NAME = "pocketlm.android-string"
ANDROID_CONTRACT_VERSION = 1
# What the official Android example calls: Interpreter.run(String, ByteBuffer).
RECIPE_SIGNATURE = "serving_default"
RECIPE_INPUT = "prompt"
RECIPE_OUTPUT = "output_0"
FLEX_PIP = "pip install tensorflow==2.19.1 tensorflow-text==2.19.0"
FLEX_HELP = (f"it needs Select-TF (Flex) ops, which neither ai-edge-litert nor TensorFlow "
             f">= 2.20 can run from Python; run it in an environment made with `{FLEX_PIP}` "
             "(scripts/test.sh makes one in .venv-flex), or on Android with the "
             "tensorflow-lite-select-tf-ops AAR")
# GPT-2 has 1024 positions: a bound for files that do not record their frozen max length.
_UNKNOWN_MAX_LENGTH = 1024
_OFF = -1e9  # logit of every token but the one being replayed


def string_signature(summary: ModelSummary) -> tuple[str, str, str] | None:
    """(signature, input, output) of a signature taking one string and returning one."""
    candidates = []
    for sig in summary.signatures.values():
        if len(sig.inputs) != 1 or len(sig.outputs) != 1:
            continue
        (iname, itensor), = sig.inputs.items()
        (oname, otensor), = sig.outputs.items()
        if itensor.dtype == "string" and otensor.dtype == "string" \
                and len(itensor.shape) <= 1 and len(otensor.shape) <= 1:
            candidates.append((sig.name, iname, oname))
    # The recipe's own names first, so a file with several string signatures picks its
    # serving_default like the Android example does.
    candidates.sort(key=lambda c: c[0] != RECIPE_SIGNATURE)
    return candidates[0] if candidates else None


def _flex_interpreter(path: Path, num_threads: int):
    """A ``tf.lite.Interpreter`` that can run Flex ops, or a ContractError saying how."""
    # TensorFlow's C++ start-up chatter would bury the one line a user needs.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError:
        raise ContractError(f"{path} is a string-in, string-out model (the recipe's Android "
                            f"format): TensorFlow is not installed, and {FLEX_HELP}") from None
    try:
        import tensorflow_text  # noqa: F401  (registers the TF-text kernels the Flex ops call)
    except ImportError:
        raise ContractError(f"{path} needs tensorflow-text next to TensorFlow "
                            f"{tf.__version__} for its tokenizer ops: {FLEX_PIP}") from None
    try:
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it is deprecated: it is the only Python runtime
            # left with the Flex delegate, so the warning has no alternative to offer.
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=num_threads)
        interpreter.allocate_tensors()
    except (RuntimeError, ValueError) as exc:
        raise ContractError(_flex_message(path, tf.__version__, exc)) from None
    return interpreter, tf.__version__


def _flex_message(path: Path, version: str, exc: BaseException) -> str:
    text = str(exc).strip()
    if "Select TensorFlow op" in text or "Flex" in text:
        return (f"cannot run {path} with TensorFlow {version}: {FLEX_HELP}")
    return f"TensorFlow {version} cannot load {path}: {text.splitlines()[0] if text else exc}"


class RecipeModel:
    """The shared-loop view of a string-in, string-out model (see the module docstring)."""

    kind = "android-string"
    fixed_sampling = True  # the graph picks the tokens: --temperature and friends do not apply

    def __init__(self, path: Path, summary: ModelSummary, contract: ContractInfo | None,
                 tokenizer: Tokenizer | None = None, num_threads: int = 2) -> None:
        found = string_signature(summary)
        if found is None:
            raise ContractError(f"{path} has no signature taking one string and returning one")
        self.path = path
        self.signature, self.input_name, self.output_name = found
        if tokenizer is None and TOKENIZER_METADATA_KEY in summary.metadata:
            tokenizer = tokenizer_from_bytes(summary.metadata[TOKENIZER_METADATA_KEY])
        # The text comes from the graph; the tokenizer here only applies the context window
        # and counts the continuation's tokens. Recipe files are GPT-2 by construction, and
        # byte-level BPE round-trips any text, so GPT-2's is the right default.
        self.tokenizer = tokenizer or BPETokenizer.gpt2()
        self.end_token_id = int(contract.end_token_id if contract else
                                self.tokenizer.end_token_id)
        self.max_length = int(contract.sequence_length) if contract else None
        # The graph prepends a start token, so max_length - 1 prompt tokens fit.
        self._window = (self.max_length or _UNKNOWN_MAX_LENGTH) - 1
        self.sequence_length = self._window
        self._interpreter, self.tensorflow_version = _flex_interpreter(path, num_threads)
        self._runner = self._interpreter.get_signature_runner(self.signature)
        self._queue: list[int] = []

    def generate_text(self, prompt: str) -> str:
        """What the Android app gets: the graph's output for ``prompt`` (prompt included)."""
        try:
            out = self._runner(**{self.input_name: np.array([prompt.encode("utf-8")])})
        except (RuntimeError, ValueError) as exc:
            text = str(exc).strip()
            if "Select TensorFlow op" in text:
                raise ContractError(_flex_message(self.path, self.tensorflow_version, exc))
            raise RuntimeFailure(f"the interpreter failed on {self.path}: {text}") from None
        value = np.asarray(out[self.output_name]).reshape(-1)[0]
        raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
        return raw.decode("utf-8", errors="replace")

    # -- StepModel ------------------------------------------------------------------------
    def start(self, ids: list[int]) -> np.ndarray:
        """Run the whole graph on the prompt, queue the continuation's tokens, emit the first."""
        prompt = self.tokenizer.decode(ids)
        output = self.generate_text(prompt).encode("utf-8")
        head = prompt.encode("utf-8")
        # The output starts with the prompt, unless the graph had to cut it at max_length.
        common = 0
        for a, b in zip(head, output):
            if a != b:
                break
            common += 1
        continuation = output[common:].decode("utf-8", errors="replace")
        self._queue = self.tokenizer.encode(continuation) + [self.end_token_id]
        # Re-tokenized text can take more tokens than the graph made: widen the window so
        # the shared loop never cuts the replay short ("window_full").
        self.sequence_length = max(self._window, len(ids) + len(self._queue))
        return self._next()

    def step(self, token: int) -> np.ndarray:
        return self._next()

    def _next(self) -> np.ndarray:
        token = self._queue.pop(0) if self._queue else self.end_token_id
        size = max(self.tokenizer.vocabulary_size, token + 1)
        logits = np.full(size, _OFF, np.float32)
        logits[token] = 0.0
        return logits
