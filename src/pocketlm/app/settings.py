"""Settings of the server and of one suggestion request (plain data, no heavy imports)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import ContextUnit, GenerationConfig

# How many times a suggestion with blocked language is generated again before giving up
# ("No suggestion"): the first attempt plus this many.
MAX_REGENERATIONS = 3
# A regeneration must be able to differ from the attempt it replaces: greedy decoding would
# repeat it word for word, so greedy requests fall back to this sampling for retries.
RETRY_TEMPERATURE = 0.8
RETRY_TOP_K = 40
# Environment variable that slows generation down (seconds per token): for demos and for
# tests that need to see streaming, cancellation or a full queue with a tiny, fast model.
TOKEN_DELAY_ENV = "POCKETLM_APP_TOKEN_DELAY"


@dataclass
class ServerConfig:
    """How ``pocketlm serve`` runs."""

    host: str = "127.0.0.1"
    port: int = 8000
    models_dir: Path | None = None
    default_model: str | None = None  # an id (file name) inside models_dir
    # Why no model is available, shown to the user when default_model is None.
    no_model_reason: str = ""
    queue_size: int = 4  # requests that may wait per model while one runs
    max_body_bytes: int = 64 * 1024
    log_prompts: bool = False
    threads: int = 2  # interpreter threads per worker
    max_loaded_models: int = 2  # worker processes kept alive at once
    token_delay: float = 0.0
    block_words: list[str] = field(default_factory=list)
    allow_words: list[str] = field(default_factory=list)
    worker_start_timeout: float = 120.0

    def __post_init__(self) -> None:
        if self.models_dir is not None:
            self.models_dir = Path(self.models_dir).resolve()
        if self.queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        if not 0 <= self.port <= 65535:
            raise ValueError("port must be in 0..65535")
        if self.token_delay == 0.0 and os.environ.get(TOKEN_DELAY_ENV):
            self.token_delay = float(os.environ[TOKEN_DELAY_ENV])

    @property
    def loopback(self) -> bool:
        """Whether the server is reachable only from this machine."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass
class SuggestRequest:
    """One completion request as the worker runs it."""

    prompt: str
    max_new_tokens: int = 30
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None
    context_window: int | None = None
    context_unit: str = ContextUnit.WORDS.value
    profanity_filter: bool = True
    max_regenerations: int = MAX_REGENERATIONS
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    min_p: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)
    logprobs: int | None = None
    echo: bool = False
    # Stream each attempt as it is checked and announce withdrawn ones with a ``retry``
    # event (the page opts in); otherwise an attempt is sent only once it is accepted, so
    # a standard client never receives text that is later withdrawn.
    retry_events: bool = False
    # A chat request: the conversation before ``prompt`` (the user message to answer), as
    # ``{"role", "content"}`` dicts; None for a plain completion.
    messages: list[dict[str, str]] | None = None

    def generation(self, attempt: int = 1) -> GenerationConfig:
        """Sampling settings for attempt 1, 2, ... (later attempts must be able to differ)."""
        temperature, top_k, seed = self.temperature, self.top_k, self.seed
        if attempt > 1:
            if seed is not None:
                seed += attempt - 1
            if temperature == 0.0:
                temperature, top_k = RETRY_TEMPERATURE, top_k or RETRY_TOP_K
        return GenerationConfig(max_new_tokens=self.max_new_tokens, temperature=temperature,
                                top_k=top_k, top_p=self.top_p, seed=seed,
                                context_window=self.context_window,
                                context_unit=self.context_unit,
                                frequency_penalty=self.frequency_penalty,
                                presence_penalty=self.presence_penalty,
                                repeat_penalty=self.repeat_penalty,
                                repeat_last_n=self.repeat_last_n, min_p=self.min_p,
                                logit_bias=dict(self.logit_bias), stop=tuple(self.stop),
                                logprobs=self.logprobs)

    @property
    def max_attempts(self) -> int:
        return 1 + (self.max_regenerations if self.profanity_filter else 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuggestRequest:
        return cls(**data)
