"""Multi-turn chat over a KV-cache model, reusing the cache from turn to turn.

A :class:`ChatSession` keeps the conversation (an optional system prompt, then alternating
user and assistant messages), renders it with the model's chat template
(:mod:`pocketlm.chat_template`) and remembers which token ids the model's cache holds. A
new turn renders the whole conversation again, finds the longest common prefix of the new
ids and the cached ones, and prefills only the rest (``KVCacheModel.extend``). When the
prompt plus ``max_new_tokens`` no longer fits the model's window, the oldest user/assistant
pairs are dropped, whole, never the system prompt; the cache is then rebuilt from where the
new prompt first differs (after the system prompt, for templates that write it first).

Why re-render and compare, instead of appending the new turn's tokens: the reply's tokens
as generated need not be the tokens its text encodes to (BPE has several spellings of one
text, and templates may trim), and the prompt must be exactly what a fresh render gives,
so the common prefix is the part that is safe to keep.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..chat_template import PLAIN, ChatTemplate, Message
from ..config import GenerationConfig
from ..errors import ContractError, PromptError
from ..tokenizers import Tokenizer
from .generation import Completion, PreparedPrompt, StepModel, _as_text, _generate
from .sampling import Sampler


def chat_template_for(model: Any) -> tuple[ChatTemplate, str]:
    """The template a model chats with, and where it came from (for people).

    The file's own (``ContractInfo.chat_template``), else its family's (files written before
    chat templates were stored), else :data:`~pocketlm.chat_template.PLAIN`. Raises
    ContractError for a stored template that is not valid.
    """
    from ..families import get_family
    from ..errors import UnsupportedModelError

    info = getattr(model, "info", None) or getattr(model, "contract", None)
    data = getattr(info, "chat_template", None)
    if data is not None:
        try:
            return ChatTemplate.from_dict(data), "the model file"
        except ValueError as exc:
            raise ContractError(f"the model's chat template is not valid: {exc}") from None
    name = getattr(info, "model_type", None)
    if isinstance(name, str):
        try:
            family = get_family(name)
        except UnsupportedModelError:
            family = None
        if family is not None and family.chat_template is not None:
            return family.chat_template, f"the {family.title} family"
    return PLAIN, "the plain fallback (the model names no chat format)"


def encode_segments(tokenizer: Tokenizer, segments: list[tuple[str, bool]]) -> list[int]:
    """Token ids of a rendered prompt: the special tokens the template names become their
    ids; message text stays plain text (a user typing ``<|im_end|>`` gets the characters).

    Messages that name no special token (nearly all): exactly
    ``tokenizer.encode(prompt, allow_special=True)``, as the published templates tokenize.
    Otherwise the text between the template's special tokens is encoded piece by piece with
    ``allow_special=False``. (SentencePiece matches its user-defined pieces, such as Gemma's
    ``<start_of_turn>``, inside any text: there the tokenizer decides.)
    """
    names = [n for n in tokenizer.special_tokens.names() if tokenizer.token_to_id(n) is not None]
    if not any(n in piece for piece, from_template in segments if not from_template
               for n in names):
        return tokenizer.encode("".join(p for p, _ in segments), allow_special=True)
    split = re.compile("(" + "|".join(re.escape(n) for n in sorted(names, key=len,
                                                                    reverse=True)) + ")")
    ids: list[int] = []
    text: list[str] = []
    for piece, from_template in segments:
        for i, part in enumerate(split.split(piece) if from_template else [piece]):
            if i % 2:
                if text:
                    ids.extend(tokenizer.encode("".join(text)))
                    text = []
                ids.append(int(tokenizer.token_to_id(part)))
            elif part:
                text.append(part)
    if text:
        ids.extend(tokenizer.encode("".join(text)))
    return ids


@dataclass
class TurnStats:
    """What one turn did with the cache.

    ``prompt_tokens``: ids fed for the turn's prompt (start token included);
    ``reused_tokens``: of those, already in the cache; ``prefilled_tokens``: the rest, run
    through the model; ``dropped_turns``: user/assistant pairs dropped to fit the window.
    """

    prompt_tokens: int = 0
    reused_tokens: int = 0
    prefilled_tokens: int = 0
    dropped_turns: int = 0


class _CacheFeeder:
    """The StepModel the decode loop drives: ``start`` prefills only what the cache lacks."""

    def __init__(self, session: ChatSession) -> None:
        m = session.model
        self.session = session
        self.tokenizer = m.tokenizer
        self.end_token_id = m.end_token_id
        self.sequence_length = m.sequence_length
        self.stop_token_ids = session.stop_token_ids

    def start(self, ids: list[int]) -> np.ndarray:
        s, model = self.session, self.session.model
        cached = s._cached
        reuse = 0
        for a, b in zip(cached, ids[:-1]):  # at least one token is run, for its logits
            if a != b:
                break
            reuse += 1
        # Full-int8 attention only clamps masked scores, so positions past the reused prefix
        # must not hold another conversation's tail: rebuild unless the turn only appends.
        exact = not getattr(getattr(model, "quantization", None),
                            "quantizes_attention_scores", False)
        if not (reuse and hasattr(model, "extend") and (exact or reuse == len(cached))):
            reuse = 0
        # Claim only the kept prefix while the model runs: if it is interrupted (Ctrl-C, a
        # closed connection), the next turn never reuses positions it may have overwritten.
        s._cached = cached[:reuse]
        logits = model.extend(ids[reuse:], start=reuse) if reuse else model.start(ids)
        s._cached, s._sequence = list(ids), getattr(model, "sequence", None)
        s.last_turn.prompt_tokens = len(ids)
        s.last_turn.reused_tokens = reuse
        s.last_turn.prefilled_tokens = len(ids) - reuse
        return logits

    def step(self, token: int) -> np.ndarray:
        logits = self.session.model.step(token)
        self.session._cached.append(int(token))
        return logits


class ChatSession:
    """A conversation with one model; call :meth:`send` once per user message.

    Args:
        model: a loaded model (``pocketlm.runtime.load_model``). A ``KVCacheModel`` reuses
            its cache between turns; other kinds re-run the whole prompt each turn.
        template: the chat format; default :func:`chat_template_for` the model.
        system: the system prompt (None: none, or the template's ``default_system``).

    Attributes:
        messages: the user and assistant messages so far (the system prompt is apart).
        system: the system prompt; change it with :meth:`set_system`.
        template, template_source: the chat format and where it came from.
        stop_token_ids: ids that end a reply (the model's and the template's).
        stop_texts: template stop strings the vocabulary has no token for: matched in text.
        notes: one-line remarks for the user (a template stop token the model lacks).
        last_turn: :class:`TurnStats` of the latest turn.
    """

    def __init__(self, model: StepModel, template: ChatTemplate | None = None,
                 system: str | None = None) -> None:
        self.model = model
        if template is None:
            self.template, self.template_source = chat_template_for(model)
        else:
            self.template, self.template_source = template, "the given template"
        self.system = system
        self.messages: list[Message] = []
        self.last_turn = TurnStats()
        self.notes: list[str] = []
        tok = model.tokenizer
        stop_ids = set(getattr(model, "stop_token_ids", None) or {model.end_token_id})
        texts = []
        for stop in self.template.stop_tokens:
            tid = tok.token_to_id(stop)
            if tid is not None and 0 <= tid < tok.vocabulary_size:
                stop_ids.add(int(tid))
            else:
                texts.append(stop)
                if stop.startswith("<") and stop.endswith(">"):
                    self.notes.append(f"note: the chat template's stop token {stop} is not in "
                                      "this model's vocabulary; replies stop where its text "
                                      "appears")
        self.stop_token_ids = frozenset(stop_ids)
        self.stop_texts = tuple(texts)
        self._cached: list[int] = []  # the ids in the model's cache, position by position
        self._sequence: Any = None  # the model's ``sequence`` when they were put there

    # -- the conversation -----------------------------------------------------------------
    def conversation(self, messages: list[Message] | None = None) -> list[Message]:
        """The system message (if any), then ``messages`` (default: :attr:`messages`)."""
        head = [Message("system", self.system)] if self.system is not None else []
        return head + list(self.messages if messages is None else messages)

    def render(self, add_generation_prompt: bool = True) -> str:
        """The prompt text of the conversation (without the model's start token)."""
        return self.template.render(self.conversation(), add_generation_prompt)

    def prompt_ids(self, add_generation_prompt: bool = True,
                   messages: list[Message] | None = None) -> list[int]:
        """The ids fed for the conversation (or for ``messages`` after the system prompt):
        the start token (if the model has one) first."""
        segments = self.template.segments(self.conversation(messages), add_generation_prompt)
        ids = encode_segments(self.model.tokenizer, segments)
        start = getattr(self.model, "start_token_id", None)
        return ([int(start)] if start is not None else []) + ids

    def set_conversation(self, messages: list[Message] | list[dict]) -> None:
        """Replace the conversation: an optional system message, then user and assistant
        messages taking turns, starting with a user (``{"role", "content"}`` dicts work too,
        as in OpenAI's chat API). The cache keeps whatever is still a prefix of the new
        prompt, so a stateless caller that sends the whole history each time (an HTTP
        endpoint) still prefills only the new part; its new user message then goes to
        :meth:`send`. Raises PromptError naming the first message that breaks these rules.
        """
        msgs = []
        for i, m in enumerate(messages):
            role, content = (m.role, m.content) if isinstance(m, Message) else (
                m.get("role") if isinstance(m, dict) else None,
                m.get("content") if isinstance(m, dict) else None)
            if role not in ("system", "user", "assistant") or not isinstance(content, str):
                raise PromptError(f"message {i}: needs a role (system, user or assistant) and "
                                  "text content")
            msgs.append(Message(role, _as_text(content)))
        system = None
        if msgs and msgs[0].role == "system":
            system, msgs = msgs[0].content, msgs[1:]
        for i, m in enumerate(msgs):
            want = "user" if i % 2 == 0 else "assistant"
            if m.role != want:
                article = "an" if want == "assistant" else "a"
                raise PromptError(f"message {i + (system is not None)}: expected {article} "
                                  f"{want} message, not {m.role} (after an optional system "
                                  "message, user and assistant take turns)")
        self.system, self.messages = system, msgs

    def set_system(self, text: str | None) -> None:
        """Set (or with None, remove) the system prompt; the next turn rebuilds the cache
        from where the prompt changes."""
        self.system = None if text is None else _as_text(text)

    def reset(self) -> None:
        """Forget the messages (the system prompt stays). The cache keeps what is still a
        prefix of the next prompt (the system turn)."""
        self.messages = []
        self.last_turn = TurnStats()

    # -- a turn -------------------------------------------------------------------------------
    def send(self, text: str, cfg: GenerationConfig) -> Completion:
        """Add a user message and start the reply: iterate the returned Completion for text
        pieces; when it is done the reply is in :attr:`messages` (what was shown, if the
        iteration stops early) and :attr:`last_turn` says what the cache did.

        ``cfg.context_window`` does not apply (whole turns are dropped instead). Raises
        PromptError for an empty message, or one that does not fit the model's window even
        with every earlier turn dropped (the conversation is then left as it was).
        """
        text = _as_text(text)
        if not text.strip():
            raise PromptError("the message is empty")
        messages = list(self.messages)
        if messages and messages[-1].role == "user":
            messages.pop()  # a reply that was never run: drop its question
        messages.append(Message("user", text))
        seq = int(self.model.sequence_length)
        dropped = 0
        ids = self.prompt_ids(messages=messages)
        while len(ids) + cfg.max_new_tokens > seq and len(messages) > 2:
            del messages[:2]  # the oldest user message and its reply, together
            dropped += 1
            ids = self.prompt_ids(messages=messages)
        if len(ids) >= seq:  # refused: the conversation stays as it was
            raise PromptError(f"the message makes a {len(ids)}-token prompt (with the system "
                              f"prompt and the chat format); the model's window is {seq} "
                              "tokens")
        self.messages = messages
        self.last_turn = TurnStats(dropped_turns=dropped)
        if self._sequence is not None and getattr(self.model, "sequence", None) != \
                self._sequence:
            self._cached = []  # someone else ran the model since: the cache is not ours
        start = getattr(self.model, "start_token_id", None)
        body = ids[1:] if start is not None else ids
        prepared = PreparedPrompt(self.render(), body, truncated=bool(dropped),
                                  start_token_id=None if start is None else int(start))
        if self.stop_texts:
            cfg = copy.copy(cfg)  # the template's stop strings join the caller's
            cfg.stop = tuple(cfg.stop) + self.stop_texts
        done = Completion(prepared)
        pieces = _generate(_CacheFeeder(self), cfg, done, Sampler(cfg, prepared.fed_ids))
        done._pieces = self._record(pieces)
        return done

    def _record(self, pieces: Iterator[str]) -> Iterator[str]:
        shown: list[str] = []
        try:
            for piece in pieces:
                shown.append(piece)
                yield piece
        finally:  # also when the caller stops early (Ctrl-C, a closed connection)
            self.messages.append(Message("assistant", "".join(shown)))
