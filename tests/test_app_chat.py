"""``POST /v1/chat/completions`` against a real ``pocketlm serve`` process with tiny chat
models (Gemma and Qwen templates, and a GPT-2 that has none: the plain transcript), through
the official ``openai`` client: replies as the in-process ChatSession gives them, streamed
and not, usage, stop, token budgets, refusals that name the field or role, the cache reused
across the requests of one conversation, and the profanity filter on user messages and on
the reply."""

from __future__ import annotations

import json
import re

import pytest

from .app_server import Server, openai_client
from .conftest import needs_convert

openai = pytest.importorskip("openai", reason="needs the official client: pip install openai")

SEQ = 128
HELLO = [{"role": "system", "content": "You are terse."},
         {"role": "user", "content": "Hello there, how are you today?"}]
GREEDY = {"temperature": 0, "max_tokens": 12}
NO_FILTER = {"profanity_filter": False}
MODELS = ("gemma", "qwen", "gpt2")


@pytest.fixture(scope="module")
def mdir(tiny_authored, tmp_path_factory):
    from .conftest import HAVE_CONVERT_STACK
    if not HAVE_CONVERT_STACK:
        pytest.skip("needs the conversion stack: pip install .[convert]")
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.tiny import tiny_causal_lm

    out = tmp_path_factory.mktemp("chat-models")
    cfg = ExportConfig(sequence_length=SEQ, prefill_lengths=(16, 4))
    # Gemma's seed: the filter test needs a greedy reply with a standalone word to block,
    # and most tiny random Gemmas reply with symbols and repeats only (seed 5: "ave...").
    for name, seed in (("gemma", 5), ("qwen", 0)):
        export(tiny_causal_lm(name, SEQ, seed=seed), out / f"{name}.tflite", cfg,
               progress=lambda _m: None)
    export(tiny_authored, out / "gpt2.tflite", ExportConfig(sequence_length=64,
                                                            prefill_lengths=(16, 4)),
           progress=lambda _m: None)
    return out


def local_reply(mdir, name: str, messages: list[dict], max_tokens: int = 12) -> str:
    """The greedy reply of an in-process ChatSession (what the server must send)."""
    from pocketlm.config import GenerationConfig
    from pocketlm.runtime import load_model
    from pocketlm.runtime.chat import ChatSession

    session = ChatSession(load_model(mdir / f"{name}.tflite"))
    session.set_conversation(messages[:-1])
    return "".join(session.send(messages[-1]["content"],
                                GenerationConfig(max_new_tokens=max_tokens)))


@pytest.fixture(scope="module")
def blocked(mdir):
    """A word of Gemma's greedy reply to HELLO, which the server's filter blocks."""
    reply = local_reply(mdir, "gemma", HELLO, 20)
    # Runs of 3+ ASCII letters that the filter, told to block them, finds in the reply: a
    # random model's reply may glue letters to symbols ("ececec@o"), which the filter reads
    # as one (split) word.
    from pocketlm.safety.filter import ProfanityFilter

    words = [w for w in re.findall(r"[A-Za-z]{3,}", reply)
             if w.lower() not in json.dumps(HELLO).lower()
             and not ProfanityFilter(extra_words=[w]).is_clean(reply)]
    assert words, f"no word to block in {reply!r}"
    return words[0]


@pytest.fixture(scope="module")
def server(mdir, blocked, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("chat-server")
    (tmp / "block.txt").write_text(blocked + "\n")
    srv = Server.start(mdir, tmp, "--block-words", str(tmp / "block.txt"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def post(server, body: dict) -> tuple[int, dict]:
    return server.post(body, "/v1/chat/completions")


def raw(server, text: str) -> tuple[int, dict]:
    status, _, data = server.request("POST", "/v1/chat/completions", text.encode(),
                                     {"Content-Type": "application/json"})
    return status, json.loads(data)


# -- replies ----------------------------------------------------------------------------------
@needs_convert
@pytest.mark.parametrize("name", MODELS)
def test_openai_client_streamed_and_not_gives_the_sessions_reply(client, mdir, name):
    expected = local_reply(mdir, name, HELLO)
    reply = client.chat.completions.create(model=name, messages=HELLO, max_tokens=12,
                                           temperature=0, extra_body=NO_FILTER)
    assert reply.object == "chat.completion" and reply.id.startswith("chatcmpl-")
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content == expected
    assert choice.finish_reason in ("stop", "length")
    usage = reply.usage
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert 1 <= usage.completion_tokens <= 12 or (expected == "" and usage.completion_tokens <= 1)
    ext = reply.model_extra["pocketlm"]
    assert ext["prefilled_tokens"] + ext["reused_tokens"] == usage.prompt_tokens
    if name == "gpt2":  # no chat format: the plain transcript
        assert ext["prompt_used"].endswith("User: Hello there, how are you today?\nAssistant:")
    else:
        assert "Hello there, how are you today?" in ext["prompt_used"]
    chunks = list(client.chat.completions.create(
        model=name, messages=HELLO, max_tokens=12, temperature=0, stream=True,
        stream_options={"include_usage": True}, extra_body=NO_FILTER))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == expected
    finals = [c.choices[0].finish_reason for c in chunks if c.choices
              and c.choices[0].finish_reason]
    assert finals == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == {
        **usage.model_dump(), "completion_tokens_details": None, "prompt_tokens_details": None}


@needs_convert
def test_completions_still_work_next_to_chat(client):
    done = client.completions.create(model="gpt2", prompt="Once upon a time", max_tokens=5,
                                     temperature=0, extra_body=NO_FILTER)
    assert done.object == "text_completion" and done.usage.completion_tokens >= 1


@needs_convert
def test_token_budgets_and_stop(client, server, mdir):
    forced = {}
    from pocketlm.runtime import load_model
    tok = load_model(mdir / "qwen.tflite").tokenizer
    forced[str(tok.encode(" a")[-1])] = 100  # the same token every step: never an end
    for field in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(model="qwen", messages=HELLO, temperature=0,
                                               logit_bias=forced, extra_body=NO_FILTER,
                                               **{field: 5})
        assert reply.usage.completion_tokens == 5 and reply.choices[0].finish_reason == "length"
    status, answer = post(server, {"model": "qwen", "messages": HELLO, "max_tokens": 4,
                                   "max_completion_tokens": 5})
    assert status == 400 and answer["error"]["param"] == "max_completion_tokens"
    status, answer = post(server, {"model": "qwen", "messages": HELLO, "max_tokens": SEQ})
    assert status == 400 and answer["error"]["param"] == "max_tokens"
    full = local_reply(mdir, "gemma", HELLO, 20)
    # A two-character stop string from inside the reply, not blank, first seen after the
    # reply's start (so the cut reply is not empty).
    stops = [full[i:i + 2] for i in range(1, len(full) - 1)
             if full[i:i + 2].strip() and full.index(full[i:i + 2]) >= 1]
    assert stops, full
    stop = stops[len(stops) // 2]
    reply = client.chat.completions.create(model="gemma", messages=HELLO, max_tokens=20,
                                           temperature=0, stop=[stop], extra_body=NO_FILTER)
    assert reply.choices[0].message.content == full[:full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


# -- the cache across requests ----------------------------------------------------------------
@needs_convert
@pytest.mark.parametrize("name", ("gemma", "qwen"))
def test_the_next_request_of_a_conversation_reuses_the_cache(client, name):
    history = list(HELLO)
    first = client.chat.completions.create(model=name, messages=history, extra_body=NO_FILTER,
                                           **GREEDY)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "And tomorrow?"}]
    second = client.chat.completions.create(model=name, messages=history,
                                            extra_body=NO_FILTER, **GREEDY)
    ext = second.model_extra["pocketlm"]
    assert ext["reused_tokens"] >= first.usage.prompt_tokens  # the whole first prompt
    assert ext["prefilled_tokens"] == second.usage.prompt_tokens - ext["reused_tokens"] > 0
    # Another conversation: only what it shares (the start of the template) is reused.
    other = client.chat.completions.create(model=name, messages=[
        {"role": "user", "content": "Something else entirely"}], extra_body=NO_FILTER, **GREEDY)
    assert other.model_extra["pocketlm"]["reused_tokens"] < first.usage.prompt_tokens


@needs_convert
def test_a_completion_in_between_does_not_leave_a_stale_cache(client, mdir):
    """The worker's session and plain completions share one model: after a completion ran,
    the conversation's next reply is still exactly a fresh session's."""
    history = list(HELLO)
    first = client.chat.completions.create(model="qwen", messages=history,
                                           extra_body=NO_FILTER, **GREEDY)
    history += [{"role": "assistant", "content": first.choices[0].message.content},
                {"role": "user", "content": "Tell me more."}]
    client.completions.create(model="qwen", prompt="Completely different text here",
                              max_tokens=8, temperature=0, extra_body=NO_FILTER)
    second = client.chat.completions.create(model="qwen", messages=history,
                                            extra_body=NO_FILTER, **GREEDY)
    assert second.choices[0].message.content == local_reply(mdir, "qwen", history)
    assert second.model_extra["pocketlm"]["reused_tokens"] == 0


# -- refusals ----------------------------------------------------------------------------------
REFUSED = [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"n": 2}, "n"), ({"audio": {"voice": "x"}}, "audio"), ({"modalities": ["audio"]},
                                                              "modalities"),
    ({"logprobs": True}, "logprobs"), ({"top_logprobs": 2}, "top_logprobs"),
    ({"prompt": "x"}, "prompt"), ({"echo": True}, "echo"), ({"best_of": 2}, "best_of"),
    ({"temperature": 3}, "temperature"), ({"top_p": 0}, "top_p"), ({"seed": True}, "seed"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),
    ({"stop": [1]}, "stop"), ({"logit_bias": {"999999": 1}}, "logit_bias"),
]


@needs_convert
@pytest.mark.parametrize("extra,param", REFUSED, ids=[p for _, p in REFUSED])
def test_unsupported_fields_are_refused_by_name(server, extra, param):
    status, answer = post(server, {"model": "gemma", "messages": HELLO, **extra})
    assert status == 400, answer
    assert answer["error"]["param"] == param and param in answer["error"]["message"]


@needs_convert
def test_messages_are_checked(server, client):
    bad = [([{"role": "tool", "content": "x"}], "'tool'"),
           ([{"role": "developer", "content": "x"}], "'developer'"),
           ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
            "'image_url'"),
           ([{"role": "user", "content": "a", "name": "bob"}], "'name'"),
           ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
            "expected a assistant"),
           ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
            "last message"),
           ([], "non-empty"), ("hi", "non-empty"), ([{"role": "user", "content": 5}],
                                                     "string or a list")]
    for messages, words in bad:
        status, answer = post(server, {"model": "gemma", "messages": messages})
        assert status == 400 and answer["error"]["param"] == "messages", answer
        assert words.replace("a assistant", "an assistant") in answer["error"]["message"] \
            or words in answer["error"]["message"], answer
    with pytest.raises(openai.BadRequestError, match="'tool'"):
        client.chat.completions.create(model="gemma", messages=[
            {"role": "tool", "content": "x", "tool_call_id": "1"}])
    parts = client.chat.completions.create(model="gemma", extra_body=NO_FILTER, **GREEDY,
                                           messages=[HELLO[0], {"role": "user", "content": [
                                               {"type": "text", "text": "Hello there, "},
                                               {"type": "text",
                                                "text": "how are you today?"}]}])
    plain = client.chat.completions.create(model="gemma", messages=HELLO,
                                           extra_body=NO_FILTER, **GREEDY)
    assert parts.choices[0].message.content == plain.choices[0].message.content


@needs_convert
@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["temperature", "top_p", "presence_penalty",
                                   "frequency_penalty", "max_tokens", "seed"])
def test_nan_and_infinity_are_refused(server, field, text):
    status, answer = raw(server, f'{{"model": "gemma", "messages": {json.dumps(HELLO)}, '
                                 f'"{field}": {text}}}')
    assert status == 400 and answer["error"]["param"] == field, answer


# -- the profanity filter ------------------------------------------------------------------------
@needs_convert
def test_a_user_message_with_blocked_language_is_refused(server, client, blocked):
    for i, messages in ((1, [HELLO[0], {"role": "user", "content": f"say {blocked} now"}]),
                        (0, [{"role": "user", "content": f"{blocked} is here"},
                             {"role": "assistant", "content": "ok"},
                             {"role": "user", "content": "fine"}])):
        status, answer = post(server, {"model": "gemma", "messages": messages})
        assert status == 422 and answer["error"]["type"] == "content_filter", answer
        assert answer["error"]["param"] == "messages"
        assert f"messages[{i}]" in answer["error"]["message"]
        assert answer["error"]["blocked"] == [blocked]
    # An assistant message is the model's own: not refused.
    ok = post(server, {"model": "gemma", "max_tokens": 4, "messages": [
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": blocked},
        {"role": "user", "content": "fine"}]})
    assert ok[0] == 200, ok


@needs_convert
def test_the_reply_never_shows_blocked_language(client, blocked):
    unfiltered = client.chat.completions.create(model="gemma", messages=HELLO, max_tokens=20,
                                                temperature=0, extra_body=NO_FILTER)
    assert blocked in unfiltered.choices[0].message.content
    reply = client.chat.completions.create(model="gemma", messages=HELLO, max_tokens=20,
                                           temperature=0, seed=3)
    content = reply.choices[0].message.content
    assert reply.model_extra["pocketlm"]["attempts"] >= 2
    if reply.choices[0].finish_reason == "content_filter":
        assert content == ""
    assert blocked not in content
    chunks = list(client.chat.completions.create(model="gemma", messages=HELLO, max_tokens=20,
                                                 temperature=0, seed=3, stream=True))
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == content and blocked not in streamed


@needs_convert
def test_neutral_values_are_accepted_and_a_message_too_long_is_a_400(server):
    status, answer = post(server, {"model": "gemma", "messages": HELLO, "max_tokens": 3,
                                   "logprobs": False, "n": 1, "response_format":
                                   {"type": "text"}, "top_logprobs": None, "user": "me"})
    assert status == 200 and answer["choices"][0]["logprobs"] is None, answer
    long = " ".join(["word"] * 400)
    status, answer = post(server, {"model": "gemma", "max_tokens": 8,
                                   "messages": [{"role": "user", "content": long}]})
    assert status == 400 and "window" in answer["error"]["message"], answer
    # Streamed, the window is found once the stream started: an error event, then [DONE]
    # (as for completions).
    conn = server.connect()
    conn.request("POST", "/v1/chat/completions", json.dumps(
        {"model": "gemma", "max_tokens": 8, "stream": True,
         "messages": [{"role": "user", "content": long}]}), {"Content-Type":
                                                              "application/json"})
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    assert resp.status == 200 and '"invalid_request_error"' in body and "window" in body
    assert body.rstrip().endswith("data: [DONE]")
