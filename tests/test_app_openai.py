"""The completions API field by field, against a real ``pocketlm serve`` process: every
field of OpenAI's legacy completions request (and the llama.cpp extensions) is applied or
refused with a 400 naming it; every number is finite and in range or refused; the official
``openai`` client works streamed and not, and never sees text the filter withdrew."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from .app_server import Server, models_dir, openai_client, served

openai = pytest.importorskip("openai", reason="needs the official client: pip install openai")

PROMPT = "Once upon a time there was a quiet village by the sea, and"
GREEDY = {"prompt": PROMPT, "max_tokens": 12, "temperature": 0, "profanity_filter": False}


@pytest.fixture(scope="module")
def mdir(tiny_models, tmp_path_factory):
    return models_dir(tiny_models, tmp_path_factory.mktemp("openai-models"))


@pytest.fixture(scope="module")
def server(mdir, tmp_path_factory):
    yield from served(mdir, tmp_path_factory)


@pytest.fixture(scope="module")
def model(mdir):
    from pocketlm.runtime import load_model

    return load_model(mdir / "tiny-f16.tflite")  # the server's default model, in-process


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def raw(server, text: str) -> tuple[int, dict]:
    """POST a body exactly as written (literal NaN, Infinity, huge numbers)."""
    status, _, data = server.request("POST", "/v1/completions", text.encode(),
                                     {"Content-Type": "application/json"})
    return status, json.loads(data)


def ok(server, body: dict) -> dict:
    status, answer = server.post(body)
    assert status == 200, answer
    return answer


def local(model, **kw):
    from pocketlm.config import GenerationConfig
    from pocketlm.runtime import complete

    return complete(model, PROMPT, GenerationConfig(**{"max_new_tokens": 12, **kw}))


# -- every number: finite, in range, a number ------------------------------------------------
NUMERIC = ["max_tokens", "n_predict", "temperature", "top_p", "n", "best_of", "logprobs",
           "presence_penalty", "frequency_penalty", "seed", "top_k", "context_window",
           "repeat_penalty", "repeat_last_n", "min_p"]
JUNK = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1" + "0" * 400,
        "-1" + "0" * 400, '"abc"', '"1"', "true", "false", "[1]", '{"a": 1}', '[[NaN]]']


@pytest.mark.parametrize("junk", JUNK)
@pytest.mark.parametrize("field", NUMERIC)
def test_every_numeric_field_refuses_junk(server, field, junk):
    status, err = raw(server, f'{{"prompt": "hi", "max_tokens": 2, "{field}": {junk}}}'
                      if field not in ("max_tokens", "n_predict")
                      else f'{{"prompt": "hi", "{field}": {junk}}}')
    assert status == 400, err
    assert err["error"]["type"] == "invalid_request_error"
    assert err["error"]["param"] == field and field in err["error"]["message"]
    assert len(err["error"]["message"]) < 200  # a 400-digit number is not echoed whole


@pytest.mark.parametrize("field, value", [
    ("max_tokens", 0), ("max_tokens", -1), ("max_tokens", 5000), ("n_predict", -2),
    ("n_predict", -1), ("temperature", -0.01), ("temperature", 2.01), ("top_p", 0),
    ("top_p", 1.5), ("n", 2), ("n", 0), ("best_of", 3), ("logprobs", -1), ("logprobs", 6),
    ("presence_penalty", 2.5), ("presence_penalty", -2.01), ("frequency_penalty", 3),
    ("frequency_penalty", -5), ("seed", 2**63), ("seed", -(2**63) - 1), ("top_k", -1),
    ("context_window", 0), ("repeat_penalty", 0), ("repeat_penalty", -1),
    ("repeat_penalty", 11), ("repeat_last_n", -2), ("min_p", -0.1), ("min_p", 1.01),
    ("temperature", 1e308), ("max_tokens", 2.5),
])
def test_numbers_out_of_range_are_refused(server, field, value):
    status, err = server.post({"prompt": "hi", field: value})
    assert status == 400, err
    assert err["error"]["param"] == field and field in err["error"]["message"]


@pytest.mark.parametrize("junk", ["NaN", "Infinity", "-Infinity", "101", "-100.5", '"x"',
                                  "true", "null", "[5]", "1e999"])
def test_logit_bias_values_are_checked(server, junk):
    status, err = raw(server, f'{{"prompt": "hi", "logit_bias": {{"50": {junk}}}}}')
    assert status == 400 and err["error"]["param"] == "logit_bias", err


@pytest.mark.parametrize("bias", ['{"-1": 5}', '{"abc": 5}', '{"1.5": 5}', '{"50257": 5}',
                                  '{"999999999": 1}', '{"": 1}', '[1, 2]', '"50: 1"', "5",
                                  '{" 5": 1}'])
def test_logit_bias_ids_are_checked(server, bias):
    status, err = raw(server, f'{{"prompt": "hi", "logit_bias": {bias}}}')
    assert status == 400 and err["error"]["param"] == "logit_bias", err


@pytest.mark.parametrize("body, param", [
    ({"stream": "yes"}, "stream"), ({"stream": 1}, "stream"), ({"echo": "true"}, "echo"),
    ({"echo": 1}, "echo"), ({"stream": True, "stream_options": {"include_usage": "y"}},
                            "include_usage"),
    ({"stream": True, "stream_options": {"other": True}}, "stream_options"),
    ({"stream": True, "stream_options": [True]}, "stream_options"),
    ({"stream_options": {"include_usage": True}}, "stream_options"),  # without stream
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"), ({"stop": [""]}, "stop"),
    ({"stop": ""}, "stop"), ({"stop": 5}, "stop"), ({"stop": [5]}, "stop"),
    ({"stop": [["x"]]}, "stop"), ({"stop": {"a": 1}}, "stop"),
    ({"suffix": " the end"}, "suffix"), ({"user": 5}, "user"),
    ({"prompt": [1, 2, 3]}, "prompt"), ({"prompt": ["one", "two"]}, "prompt"),
    ({"prompt": [[1, 2]]}, "prompt"), ({"profanity_filter": "no"}, "profanity_filter"),
    ({"retry_events": 1}, "retry_events"), ({"mirostat": 2}, "mirostat"),
    ({"typical_p": 0.9}, "typical_p"), ({"functions": []}, "functions"),
    ({"max_tokens": 5, "n_predict": 6}, "n_predict"), ({"n": True}, "n"),
    ({"best_of": "1"}, "best_of"), ({"model": 5}, "model"),
    ({"context_unit": []}, "context_unit"), ({"context_unit": 0}, "context_unit"),
    ({"context_unit": ""}, "context_unit"), ({"profanity_filter": 0}, "profanity_filter"),
])
def test_fields_that_cannot_be_applied_are_refused_by_name(server, body, param):
    status, err = server.post({"prompt": "hi", **body})
    assert status == 400, err
    assert err["error"]["param"] == param, err
    assert param in err["error"]["message"] or param == "include_usage"


@pytest.mark.parametrize("body", [
    '{"prompt": ' + "[" * 30000 + "]" * 30000 + "}",
    '{"prompt": "hi", "logit_bias": ' + '{"1": ' * 8000 + "1" + "}" * 8001,
    '{"prompt": "hi", "stop": ' + "[" * 20000 + "]" * 20000 + "}",
])
def test_deeply_nested_junk_is_a_400(server, body):
    status, err = raw(server, body)
    assert status == 400 and err["error"]["type"] == "invalid_request_error", err


def test_a_500_never_comes_from_values(server):
    """Odd but valid values all work."""
    for body in ({"seed": -(2**63)}, {"seed": 2**63 - 1}, {"temperature": 2, "top_p": 1e-9},
                 {"min_p": 1, "temperature": 2}, {"repeat_penalty": 1e-9},
                 {"repeat_last_n": -1, "repeat_penalty": 10}, {"logit_bias": {"0": -100}},
                 {"presence_penalty": -2, "frequency_penalty": -2}, {"top_k": 100000},
                 {"max_tokens": 16.0}, {"n": 1.0}):
        assert ok(server, {"prompt": "hi there", "max_tokens": 3, **body})["choices"]


# -- each field does what it says --------------------------------------------------------------
def test_neutral_values_and_nulls_change_nothing(server):
    base = ok(server, GREEDY)["choices"][0]["text"]
    for extra in ({"stream": None}, {"stream": False}, {"stop": []}, {"stop": None},
                  {"n": 1}, {"best_of": 1}, {"echo": False}, {"logprobs": None},
                  {"suffix": None}, {"suffix": ""}, {"user": "someone"}, {"seed": None},
                  {"logit_bias": {}}, {"logit_bias": None}, {"frequency_penalty": 0},
                  {"presence_penalty": None}, {"min_p": 0}, {"repeat_penalty": 1},
                  {"stream_options": None}, {"top_p": None}, {"max_tokens": None,
                                                              "n_predict": 12}):
        body = ok(server, {**GREEDY, **extra})
        assert body["object"] == "text_completion"  # not a stream
        assert body["choices"][0]["text"] == base, extra


def test_a_bare_model_name_resolves(server):
    for name in ("tiny-int8", "tiny-int8.tflite"):
        assert ok(server, {**GREEDY, "model": name})["model"] == "tiny-int8.tflite"
    status, err = server.post({**GREEDY, "model": "tiny-none"})
    assert status == 404 and err["error"]["type"] == "model_not_found"


def test_n_predict_limits_tokens(server):
    body = ok(server, {**GREEDY, "max_tokens": None, "n_predict": 5})
    assert body["usage"]["completion_tokens"] == 5
    assert body["choices"][0]["finish_reason"] == "length"
    assert ok(server, {**GREEDY, "max_tokens": 5, "n_predict": 5})["usage"][
        "completion_tokens"] == 5
    status, err = server.post({**GREEDY, "max_tokens": None, "n_predict": 64})
    assert status == 400 and err["error"]["param"] == "n_predict"
    assert "window of 64" in err["error"]["message"]


def test_penalties_match_the_runtime_and_break_repeats(server, model):
    """A greedy completion of the tiny model repeats tokens; each penalty changes it
    exactly as the runtime computes it (the server applies the field, not a look-alike)."""
    long = {**GREEDY, "max_tokens": 30, "logprobs": 0}
    plain = ok(server, long)["choices"][0]
    tokens = plain["logprobs"]["tokens"]
    assert len(set(tokens)) < len(tokens), "the greedy completion must repeat for this test"
    for field, value in (("frequency_penalty", 2.0), ("presence_penalty", 2.0),
                         ("frequency_penalty", 0.7), ("repeat_penalty", 1.5)):
        got = ok(server, {**long, field: value})["choices"][0]
        assert got["text"] != plain["text"], field
        assert got["text"] == local(model, max_new_tokens=30, **{field: value}).text, field
        if value == 2.0:  # a repeat costs more than the whole spread of the tiny model
            assert len(set(got["logprobs"]["tokens"])) == len(got["logprobs"]["tokens"])
    negative = ok(server, {**long, "frequency_penalty": -2.0})["choices"][0]
    assert negative["text"] == local(model, max_new_tokens=30, frequency_penalty=-2.0).text


def test_logit_bias_forces_and_bans_tokens(server, model):
    ship = model.tokenizer.encode(" ship")
    assert len(ship) == 1
    body = ok(server, {**GREEDY, "max_tokens": 4, "logit_bias": {str(ship[0]): 100}})
    assert body["choices"][0]["text"] == " ship" * 4
    plain = local(model, max_new_tokens=1)
    banned = ok(server, {**GREEDY, "max_tokens": 1,
                         "logit_bias": {str(plain.token_ids[0]): -100}})
    assert banned["choices"][0]["text"] != plain.text
    for big in (model.tokenizer.vocabulary_size, 10**6):
        status, err = server.post({**GREEDY, "logit_bias": {str(big): 1}})
        assert status == 400 and str(big) in err["error"]["message"]


def test_min_p_one_equals_greedy(server):
    greedy = ok(server, GREEDY)["choices"][0]["text"]
    for seed in (1, 2, 3):
        hot = ok(server, {**GREEDY, "temperature": 2, "min_p": 1.0, "seed": seed})
        assert hot["choices"][0]["text"] == greedy
    sampled = {ok(server, {**GREEDY, "temperature": 2, "min_p": 0.0, "seed": s})
               ["choices"][0]["text"] for s in (1, 2, 3)}
    assert greedy not in sampled  # without min_p the same seeds sample other text


@pytest.mark.parametrize("n", [0, 1, 3, 5])
def test_logprobs_are_the_models_log_softmax(server, model, n):
    from pocketlm.app.suggest import token_text
    from pocketlm.runtime.sampling import log_softmax

    body = ok(server, {**GREEDY, "max_tokens": 5, "logprobs": n})
    choice = body["choices"][0]
    lp = choice["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == 5
    assert "".join(lp["tokens"]) == choice["text"]
    assert all(len(top) == n for top in lp["top_logprobs"])
    # The first token, against the model's own logits in-process.
    ids = [model.start_token_id] + model.tokenizer.encode(PROMPT)  # as the server feeds it
    ref = log_softmax(model.start(ids))
    first = int(np.argmax(ref))
    assert lp["token_logprobs"][0] == pytest.approx(ref[first], abs=1e-5)
    if n:
        order = np.argsort(-ref)[:n]
        want = {token_text(model.tokenizer, i): ref[i] for i in order}
        assert lp["top_logprobs"][0] == pytest.approx(want, abs=1e-5)
        for token, value, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
            assert top[token] == pytest.approx(value) == max(top.values())  # greedy
    # OpenAI's offsets count from the start of the prompt.
    text = PROMPT + choice["text"]
    for token, offset in zip(lp["tokens"], lp["text_offset"]):
        assert text[offset:offset + len(token)] == token
    assert all(v <= 0 and math.isfinite(v) for v in lp["token_logprobs"])


def test_echo_returns_prompt_and_completion(server):
    plain = ok(server, GREEDY)["choices"][0]["text"]
    body = ok(server, {**GREEDY, "echo": True})
    assert body["choices"][0]["text"] == PROMPT + plain
    only = ok(server, {**GREEDY, "echo": True, "max_tokens": 0})
    assert only["choices"][0]["text"] == PROMPT and only["usage"]["completion_tokens"] == 0
    scored = ok(server, {**GREEDY, "echo": True, "logprobs": 2, "max_tokens": 3})
    lp = scored["choices"][0]["logprobs"]
    prompt_tokens = scored["usage"]["prompt_tokens"]
    assert len(lp["tokens"]) == prompt_tokens + 3
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    assert all(v is not None and v <= 0 for v in lp["token_logprobs"][1:])
    assert all(len(t) == 2 for t in lp["top_logprobs"][1:])
    assert "".join(lp["tokens"]) == scored["choices"][0]["text"]
    assert lp["text_offset"][0] == 0 and lp["text_offset"][prompt_tokens] == len(PROMPT)


def _stops(text: str) -> list[str]:
    """Stop strings cut out of the middle of ``text``, some across token boundaries."""
    return [text[5:8], text[len(text) // 2 - 1:len(text) // 2 + 2], text[-3:]]


def test_stop_cuts_the_text_and_finishes_with_stop(server):
    full = ok(server, {**GREEDY, "max_tokens": 20})["choices"][0]["text"]
    for stop in _stops(full):
        cut = full[:full.index(stop)]
        for value in (stop, [stop], ["\x00never", stop]):
            body = ok(server, {**GREEDY, "max_tokens": 20, "stop": value})
            assert body["choices"][0]["text"] == cut, (stop, value)
            assert body["choices"][0]["finish_reason"] == "stop"
        status, events = server.stream({**GREEDY, "max_tokens": 20, "stop": stop})
        assert "".join(e["choices"][0]["text"] for e in events
                       if isinstance(e, dict) and e.get("choices")) == cut
        assert events[-2]["choices"][0]["finish_reason"] == "stop"


def test_a_pending_stop_prefix_is_released(server):
    """Text that could start a stop sequence is held back, then sent when it is not one."""
    full = ok(server, {**GREEDY, "max_tokens": 20})["choices"][0]["text"]
    decoys = [full[4:9] + "\x00", full[-4:] + "zz", full + "!"]
    body = ok(server, {**GREEDY, "max_tokens": 20, "stop": decoys})
    assert body["choices"][0]["text"] == full
    assert body["choices"][0]["finish_reason"] == "length"
    status, events = server.stream({**GREEDY, "max_tokens": 20, "stop": decoys})
    assert "".join(e["choices"][0]["text"] for e in events
                   if isinstance(e, dict) and e.get("choices")) == full


def test_include_usage_adds_a_usage_chunk(server):
    status, events = server.stream({**GREEDY, "stream_options": {"include_usage": True}})
    last = events[-2]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == 12
    status, events = server.stream({**GREEDY, "stream_options": {"include_usage": False}})
    assert events[-2]["choices"]


# -- the official client -------------------------------------------------------------------
def test_openai_client_plain(client, server, model):
    greedy = ok(server, {**GREEDY, "max_tokens": 20})["choices"][0]["text"]
    stop = _stops(greedy)[1]
    got = client.completions.create(
        model="tiny-f16", prompt=PROMPT, max_tokens=20, temperature=0, stop=[stop],
        logprobs=2, echo=True, frequency_penalty=0.0, presence_penalty=0.0, seed=1,
        user="tester", extra_body={"profanity_filter": False})
    choice = got.choices[0]
    assert choice.text == PROMPT + greedy[:greedy.index(stop)]
    assert choice.finish_reason == "stop" and got.model == "tiny-f16.tflite"
    assert choice.logprobs.tokens[0] and choice.logprobs.token_logprobs[0] is None
    assert got.usage.prompt_tokens == len(model.tokenizer.encode(PROMPT))
    penal = client.completions.create(model="tiny-f16.tflite", prompt=PROMPT, max_tokens=12,
                                      temperature=0, frequency_penalty=2.0,
                                      extra_body={"profanity_filter": False})
    assert penal.choices[0].text == local(model, frequency_penalty=2.0).text
    ship = model.tokenizer.encode(" ship")[0]
    forced = client.completions.create(model="tiny-f16", prompt=PROMPT, max_tokens=3,
                                       temperature=0, logit_bias={str(ship): 100})
    assert forced.choices[0].text == " ship ship ship"
    with pytest.raises(openai.BadRequestError, match="frequency_penalty"):
        client.completions.create(model="tiny-f16", prompt=PROMPT, frequency_penalty=9)
    with pytest.raises(openai.BadRequestError, match="suffix"):
        client.completions.create(model="tiny-f16", prompt=PROMPT, suffix="The end.")


def test_openai_client_stream(client, server):
    greedy = ok(server, {**GREEDY, "max_tokens": 20})["choices"][0]["text"]
    stop = _stops(greedy)[0]
    chunks = list(client.completions.create(
        model="tiny-f16", prompt=PROMPT, max_tokens=20, temperature=0, stop=stop, logprobs=1,
        stream=True, stream_options={"include_usage": True},
        extra_body={"profanity_filter": False}))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == greedy[:greedy.index(stop)]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    tokens = [t for c in chunks if c.choices and c.choices[0].logprobs
              for t in c.choices[0].logprobs.tokens]
    assert "".join(tokens).startswith(text)  # the last token may reach into the stop
    assert chunks[-1].usage.completion_tokens >= len(tokens)
    echoed = client.completions.create(model="tiny-f16", prompt=PROMPT, max_tokens=5,
                                       temperature=0, echo=True, stream=True,
                                       extra_body={"profanity_filter": False})
    plain = ok(server, {**GREEDY, "max_tokens": 5, "echo": True})["choices"][0]["text"]
    assert "".join(c.choices[0].text for c in echoed) == plain
    assert plain.startswith(PROMPT) and len(plain) > len(PROMPT)


# -- the filter: a standard stream never shows withdrawn text -----------------------------------
def test_a_standard_stream_never_shows_withdrawn_text(server, mdir, tmp_path):
    from pocketlm.app.settings import RETRY_TEMPERATURE, RETRY_TOP_K

    seed = 11
    first = ok(server, {**GREEDY, "seed": seed})["choices"][0]["text"]
    second = ok(server, {**GREEDY, "seed": seed + 1, "temperature": RETRY_TEMPERATURE,
                         "top_k": RETRY_TOP_K})["choices"][0]["text"]
    words = [w for w in first.split()[1:] if w.isalpha() and len(w) >= 4]
    blocked = next(w for w in words if w.lower() not in second.lower()
                   and w.lower() not in PROMPT.lower())
    withdrawn = first[:first.index(blocked)]  # what the old stream showed, then withdrew
    (tmp_path / "block.txt").write_text(blocked + "\n")
    srv = Server.start(mdir, tmp_path, "--block-words", str(tmp_path / "block.txt"))
    try:
        c = openai.OpenAI(base_url=f"http://{srv.host}:{srv.port}/v1", api_key="none",
                          max_retries=0)
        for stream_kw in ({}, {"stream_options": {"include_usage": True}}):
            chunks = list(c.completions.create(model="tiny-f16", prompt=PROMPT, max_tokens=12,
                                               temperature=0, seed=seed, stream=True,
                                               **stream_kw))
            texts = [ch.choices[0].text for ch in chunks if ch.choices]
            assert "".join(texts) == second  # exactly the accepted attempt
            assert blocked not in "".join(texts)
            if withdrawn.strip() and not second.startswith(withdrawn):
                assert not "".join(texts).startswith(withdrawn)
        plain = c.completions.create(model="tiny-f16", prompt=PROMPT, max_tokens=12,
                                     temperature=0, seed=seed)
        assert plain.choices[0].text == second
        # The page opts in to seeing attempts as they are checked, with retry events.
        status, events = srv.stream({**GREEDY, "seed": seed, "profanity_filter": True,
                                     "retry_events": True})
        kinds = [(e.get("pocketlm") or {}).get("event") for e in events if isinstance(e, dict)]
        assert "retry" in kinds
    finally:
        srv.stop()
