"""Keep TensorFlow's start-up chatter off a user's terminal.

Importing TensorFlow on a CPU-only machine prints a dozen lines before any work starts
("All log messages before absl::InitializeLog()", oneDNN notes, "Could not find cuda
drivers", "failed call to cuInit ... (303)"). Some come before TensorFlow reads
TF_CPP_MIN_LOG_LEVEL, so that variable alone cannot hide them: :func:`quiet_tensorflow`
imports TensorFlow with the process's stderr (file descriptor 2) sent to a temporary file,
then writes back every line that is not known start-up noise. Errors stay visible.
``POCKETLM_VERBOSE=1`` turns all of this off.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Iterator

# Start-up lines that say nothing a user can act on: info and warning lines in absl's
# format, absl's own banner, and CUDA probing errors on a machine without a GPU driver.
_NOISE = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)"
                    r"|[IW]\d{4} \d\d:\d\d:\d\d"
                    r"|E\d{4} \d\d:\d\d:\d\d.*(cuInit|cuda|CUDA|cuDNN|cuFFT|cuBLAS)"
                    # SentencePiece's info lines on loading a model ("normalizer.cc(51)
                    # LOG(INFO) precompiled_charsmap is empty"): an identity normalizer.
                    r"|\S+\.cc\(\d+\) LOG\(INFO\)"
                    # The converter: a graph attribute newer than its op registry (harmless,
                    # it says so itself), and the calibrator's settings line.
                    r"|E\d{4} \d\d:\d\d:\d\d.*node_def_util.*attribute Truncate"
                    r"|fully_quantize: \d, inference_type:"
                    # ai-edge-quantizer's progress bars (it ignores enable_progress_report).
                    r"|(Generating Quantization Parameters|Applying Transformations to tensors)"
                    r"::")
_done = False


def verbose() -> bool:
    """Whether POCKETLM_VERBOSE asks for every log line."""
    return os.environ.get("POCKETLM_VERBOSE", "").strip() not in ("", "0")


def quiet_tensorflow() -> None:
    """Import TensorFlow quietly (see the module docstring). Call it before the first
    ``import tensorflow``/``keras``; later calls, and calls after TensorFlow is imported,
    do nothing. Raises ImportError when TensorFlow is not installed."""
    global _done
    if _done or verbose() or "tensorflow" in sys.modules:
        _done = True
        return
    _done = True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info and warnings after start-up
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)  # the converter's Python warnings
    with filtered_stderr():
        import tensorflow as tf
        # The CUDA probe ("failed call to cuInit") runs at the first device query: do it
        # now, while stderr is caught, rather than in the middle of the work.
        tf.config.list_physical_devices("GPU")


@contextlib.contextmanager
def filtered_stderr() -> Iterator[None]:
    """Catch what native code writes to file descriptor 2 in this block, then write back
    every line that is not known noise (errors stay). A no-op with POCKETLM_VERBOSE."""
    if verbose():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode("utf-8", errors="replace").splitlines(True):
                if not _NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()
