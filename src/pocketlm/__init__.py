"""pocketlm: author a KerasHub LLM, convert it to LiteRT, quantize it, run it on-device."""

__version__ = "0.1.0"
