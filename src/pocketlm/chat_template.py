"""Chat templates as data: per-role prefix and suffix strings (no Jinja, no Keras).

A :class:`ChatTemplate` says how a conversation becomes one prompt. It is plain data so the
runtime renders it without a template engine, a ``.tflite`` carries it in its metadata
(``ContractInfo.chat_template``), ``--chat-template FILE`` replaces it (the same JSON), and
it maps one to one onto LiteRT-LM's ``LlmMetadata`` prompt templates (a prefix and suffix
per role, the "system prompt goes into the first user turn" behaviour of Gemma and Mistral,
and extra stop tokens) for a ``.litertlm`` bundle later.

The JSON (every key but ``user`` and ``assistant`` optional)::

    {"name": "chatml",
     "system": ["<|im_start|>system\\n", "<|im_end|>\\n"],     # [prefix, suffix]
     "user": ["<|im_start|>user\\n", "<|im_end|>\\n"],
     "assistant": ["<|im_start|>assistant\\n", "<|im_end|>\\n"],
     "generation_prompt": "<|im_start|>assistant\\n",          # opens the reply
     "system_in_first_user": false,   # true: system prefix+text+suffix opens the 1st user text
     "default_system": null,          # used when the conversation has no system prompt
     "trim": false,                   # strip each message's whitespace (Jinja's | trim)
     "stop_tokens": ["<|im_end|>"],   # end a reply (tokens; text where not in the vocabulary)
     "source": "where the format comes from"}

The model's start token (``<bos>``, ``<|begin_of_text|>``) is not part of the template: the
runtime prepends it as for any prompt (the file says whether the model has one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")
_MAX_FIELD_CHARS = 4096  # an affix longer than this is a mistake, not a template


@dataclass(frozen=True)
class Message:
    """One turn: ``role`` is "system", "user" or "assistant"; ``content`` its text."""

    role: str
    content: str


@dataclass(frozen=True)
class ChatTemplate:
    """How a conversation is written as one prompt (see the module docstring for the JSON).

    Attributes:
        name: a short name (``"chatml"``, ``"gemma"``).
        system, user, assistant: ``(prefix, suffix)`` written around each message of the role.
        generation_prompt: written after the last message to open the reply (usually the
            assistant prefix; the plain template's differs by a trailing space).
        system_in_first_user: the model has no system role (Gemma, Mistral): the system
            text, wrapped in the system prefix and suffix, opens the first user message.
        default_system: the system text when the conversation sets none (Qwen 2.5).
        trim: strip leading and trailing whitespace of each message (Gemma's and Llama 3's
            published templates do, with Jinja's ``trim``).
        stop_tokens: strings that end a reply: special tokens where the vocabulary has them,
            otherwise stop sequences matched in the text.
        source: where the format comes from (for people).
    """

    name: str
    user: tuple[str, str]
    assistant: tuple[str, str]
    system: tuple[str, str] = ("", "")
    generation_prompt: str = ""
    system_in_first_user: bool = False
    default_system: str | None = None
    trim: bool = False
    stop_tokens: tuple[str, ...] = ()
    source: str = ""

    # -- rendering ----------------------------------------------------------------------------
    def segments(self, messages: list[Message], add_generation_prompt: bool = True
                 ) -> list[tuple[str, bool]]:
        """The prompt as ``(text, from_template)`` pieces, in order.

        Template text may name special tokens (``<|im_start|>``); message text never becomes
        a special token, whatever it contains (see :func:`pocketlm.runtime.chat.encode_segments`).
        ``messages`` may start with one system message; raises ValueError for another role.
        """
        msgs = list(messages)
        system = None
        if msgs and msgs[0].role == "system":
            system, msgs = msgs[0].content, msgs[1:]
        if system is None:
            system = self.default_system
        out: list[tuple[str, bool]] = []

        def add(role: str, text: str, lead: str | None = None) -> None:
            prefix, suffix = getattr(self, role)
            out.append((prefix, True))
            if lead is not None:
                sp, ss = self.system
                out.extend([(sp, True), (lead, False), (ss, True)])  # not trimmed (Gemma 3)
            out.extend([(self._clean(text), False), (suffix, True)])

        pending_system = None
        if system is not None:
            if self.system_in_first_user:
                pending_system = system
            else:
                add("system", system)
        for m in msgs:
            if m.role not in ("user", "assistant"):
                raise ValueError(f"a {m.role!r} message can only come first")
            lead = None
            if m.role == "user" and pending_system is not None:
                lead, pending_system = pending_system, None
            add(m.role, m.content, lead)
        if add_generation_prompt:
            out.append((self.generation_prompt, True))
        return [(t, tpl) for t, tpl in out if t]

    def render(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        """The prompt text (without the model's start token)."""
        return "".join(t for t, _ in self.segments(messages, add_generation_prompt))

    def _clean(self, text: str) -> str:
        return text.strip() if self.trim else text

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "system": list(self.system), "user": list(self.user),
                "assistant": list(self.assistant), "generation_prompt": self.generation_prompt,
                "system_in_first_user": self.system_in_first_user,
                "default_system": self.default_system, "trim": self.trim,
                "stop_tokens": list(self.stop_tokens), "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> ChatTemplate:
        """Read the JSON form strictly; raises ValueError naming the first bad key."""
        if not isinstance(data, dict):
            raise ValueError("a chat template is a JSON object")
        known = set(cls(name="", user=("", ""), assistant=("", "")).to_dict())
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown chat template key {unknown[0]!r} (known: "
                             f"{', '.join(sorted(known))})")
        for key in ("user", "assistant"):
            if key not in data:
                raise ValueError(f"the chat template has no {key!r} [prefix, suffix]")

        def text(key: str, value: Any) -> str:
            if not isinstance(value, str) or len(value) > _MAX_FIELD_CHARS:
                raise ValueError(f"chat template {key!r} must be a string of at most "
                                 f"{_MAX_FIELD_CHARS} characters")
            return value

        def pair(key: str) -> tuple[str, str]:
            value = data.get(key, ["", ""])
            if not isinstance(value, (list, tuple)) or len(value) != 2:
                raise ValueError(f"chat template {key!r} must be [prefix, suffix]")
            return text(key, value[0]), text(key, value[1])

        def flag(key: str) -> bool:
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise ValueError(f"chat template {key!r} must be true or false")
            return value

        stops = data.get("stop_tokens", [])
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ValueError("chat template 'stop_tokens' must be a list of non-empty strings")
        default = data.get("default_system")
        return cls(name=text("name", data.get("name", "custom")), system=pair("system"),
                   user=pair("user"), assistant=pair("assistant"),
                   generation_prompt=text("generation_prompt",
                                          data.get("generation_prompt", "")),
                   system_in_first_user=flag("system_in_first_user"),
                   default_system=None if default is None else text("default_system", default),
                   trim=flag("trim"), stop_tokens=tuple(text("stop_tokens", s) for s in stops),
                   source=text("source", data.get("source", "")))


def load_chat_template(path: str | Path) -> ChatTemplate:
    """Read a template JSON file; raises ValueError with a one-line reason."""
    try:
        raw = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise ValueError(f"cannot read chat template {path}: {reason}") from None
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc.msg} (line {exc.lineno})") from None
    try:
        return ChatTemplate.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# -- the published formats ------------------------------------------------------------------
# Each follows the model's published chat template (HF tokenizer_config.json ``chat_template``)
# for system, user and assistant turns; KerasHub 0.32 ships no chat templates for these
# families. The tests pin a rendered 3-turn conversation of each, byte for byte.

# google/gemma-2b-it, gemma-2-2b-it and gemma-3-1b-it: "<start_of_turn>" + role + "\n" +
# (content | trim) + "<end_of_turn>\n", the assistant role called "model", generation prompt
# "<start_of_turn>model\n". Gemma 1/2 have no system role; Gemma 3 prepends the system text
# and "\n\n" to the first user message, which is what this does for all three.
GEMMA = ChatTemplate(
    name="gemma", system=("", "\n\n"), user=("<start_of_turn>user\n", "<end_of_turn>\n"),
    assistant=("<start_of_turn>model\n", "<end_of_turn>\n"),
    generation_prompt="<start_of_turn>model\n", system_in_first_user=True, trim=True,
    stop_tokens=("<end_of_turn>",),
    source="google/gemma-3-1b-it tokenizer_config.json chat_template")

# meta-llama/Meta-Llama-3-8B-Instruct: "<|start_header_id|>" + role + "<|end_header_id|>\n\n" +
# (content | trim) + "<|eot_id|>"; generation prompt the assistant header. (Llama 3.1's
# template also writes a "Cutting Knowledge Date" block into the system turn; not done here.)
LLAMA3 = ChatTemplate(
    name="llama3",
    system=("<|start_header_id|>system<|end_header_id|>\n\n", "<|eot_id|>"),
    user=("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>"),
    assistant=("<|start_header_id|>assistant<|end_header_id|>\n\n", "<|eot_id|>"),
    generation_prompt="<|start_header_id|>assistant<|end_header_id|>\n\n", trim=True,
    stop_tokens=("<|eot_id|>",),
    source="meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template")


def _chatml(name: str, default_system: str | None, source: str) -> ChatTemplate:
    return ChatTemplate(
        name=name, system=("<|im_start|>system\n", "<|im_end|>\n"),
        user=("<|im_start|>user\n", "<|im_end|>\n"),
        assistant=("<|im_start|>assistant\n", "<|im_end|>\n"),
        generation_prompt="<|im_start|>assistant\n", default_system=default_system,
        stop_tokens=("<|im_end|>",), source=source)


# Qwen/Qwen2.5-0.5B-Instruct: ChatML, with this system text when none is given.
QWEN = _chatml("qwen2.5", "You are Qwen, created by Alibaba Cloud. You are a helpful "
               "assistant.", "Qwen/Qwen2.5-0.5B-Instruct tokenizer_config.json chat_template")
# Qwen/Qwen1.5-MoE-A2.7B-Chat: ChatML with "You are a helpful assistant." by default.
QWEN_MOE = _chatml("qwen1.5", "You are a helpful assistant.",
                   "Qwen/Qwen1.5-MoE-A2.7B-Chat tokenizer_config.json chat_template")
# Qwen/Qwen3-0.6B: ChatML, no default system text. (Its template also strips <think> blocks
# from earlier replies and handles tools; plain turns render as here.)
QWEN3 = _chatml("qwen3", None, "Qwen/Qwen3-0.6B tokenizer_config.json chat_template "
                "(plain turns)")
# HuggingFaceTB/SmolLM3-3B: ChatML turns. (Its template writes a metadata block with dates and
# the reasoning mode into the system turn; not done here.)
SMOLLM3 = _chatml("smollm3", None, "HuggingFaceTB/SmolLM3-3B chat_template (ChatML turns, "
                  "without its metadata system block)")

# microsoft/Phi-3-mini-4k-instruct: "<|" + role + "|>\n" + content + "<|end|>\n"; generation
# prompt "<|assistant|>\n".
PHI3 = ChatTemplate(
    name="phi3", system=("<|system|>\n", "<|end|>\n"), user=("<|user|>\n", "<|end|>\n"),
    assistant=("<|assistant|>\n", "<|end|>\n"), generation_prompt="<|assistant|>\n",
    stop_tokens=("<|end|>",),
    source="microsoft/Phi-3-mini-4k-instruct tokenizer_config.json chat_template")

# mistralai/Mistral-7B-Instruct-v0.2: "[INST] " + content + " [/INST]" for a user turn, the
# reply followed by "</s>"; no system role: the system text and "\n\n" open the first user
# message (as Mistral's later templates and mistral-common do).
MISTRAL = ChatTemplate(
    name="mistral", system=("", "\n\n"), user=("[INST] ", " [/INST]"), assistant=("", "</s>"),
    generation_prompt="", system_in_first_user=True, stop_tokens=("</s>",),
    source="mistralai/Mistral-7B-Instruct-v0.2 tokenizer_config.json chat_template")

# For models without a published chat format (GPT-2, OPT, base models): a transcript. The
# reply opens after "Assistant:" and ends where the model starts the next "User:" line.
PLAIN = ChatTemplate(
    name="plain", system=("", "\n\n"), user=("User: ", "\n"), assistant=("Assistant: ", "\n"),
    generation_prompt="Assistant:", trim=True, stop_tokens=("\nUser:",),
    source="pocketlm's fallback for models without a chat format")
