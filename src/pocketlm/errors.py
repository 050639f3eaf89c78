"""One small hierarchy of library errors.

The library raises these with a message that says what to do instead; the CLI turns them
into one line on stderr and a non-zero exit. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PocketLMError(Exception):
    """Base class of every error pocketlm raises on purpose."""

    exit_code = 1


class ModelFileError(PocketLMError):
    """A model file is missing, unreadable, or not a valid .tflite flatbuffer."""

    exit_code = 2


class ContractError(ModelFileError):
    """A .tflite file is valid but not a language model pocketlm knows how to run."""


class TokenizerError(PocketLMError):
    """No tokenizer could be found or built for a model."""


class PresetError(PocketLMError):
    """A preset name or directory cannot be loaded."""

    exit_code = 2


class UnsupportedModelError(PresetError):
    """A model of a family pocketlm does not convert; the message says why."""


class ConfigError(PocketLMError):
    """A model config with unknown or missing keys, or values of the wrong kind."""

    exit_code = 2


class ConversionError(PocketLMError):
    """Conversion or quantization of a model failed."""


class PromptError(PocketLMError):
    """A prompt cannot be used as given (empty, not UTF-8, ...)."""

    exit_code = 2


class RuntimeFailure(PocketLMError):
    """The interpreter failed while running a model."""


class UsageError(PocketLMError):
    """A command-line value or path is unusable (out of range, missing, a directory...)."""

    exit_code = 2


def first_line(error: BaseException | str, limit: int | None = None) -> str:
    """The first non-empty line of an exception's message (native engines write several
    lines: a status chain, log lines), stripped and cut at ``limit`` characters; the
    exception's class name when the message is empty."""
    text = str(error)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    fallback = type(error).__name__ if isinstance(error, BaseException) else "no message"
    return (lines[0] if lines else fallback)[:limit]
