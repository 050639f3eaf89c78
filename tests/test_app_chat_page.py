"""The page's chat mode in a real browser (Playwright driving Debian's Chromium) against a
real ``pocketlm serve`` process with a tiny Qwen (a chat template: Qwen2.5's ChatML) and a tiny GPT-2
(none): the mode picked by the model, send, stream, stop, reset, the window indicator, the
conversation kept across a reload, focus, and a phone's width."""

from __future__ import annotations

import json
import re

import pytest

from .app_server import Server
from .test_app_browser import (ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, _overflowing,  # noqa: F401
                               active, browser)

SEQ = 128

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def mdir(tiny_authored, tmp_path_factory):
    from pocketlm.config import ExportConfig
    from pocketlm.export import export
    from pocketlm.tiny import tiny_causal_lm

    out = tmp_path_factory.mktemp("chat-page-models")
    export(tiny_causal_lm("qwen", SEQ), out / "qwen.tflite",
           ExportConfig(sequence_length=SEQ, prefill_lengths=(16, 4)), progress=lambda _m: None)
    export(tiny_authored, out / "gpt2.tflite",
           ExportConfig(sequence_length=64, prefill_lengths=(16, 4)), progress=lambda _m: None)
    return out


@pytest.fixture(scope="module")
def server(mdir, tmp_path_factory):
    # The Qwen is the default; slowed down so that streaming and Stop are visible.
    srv = Server.start(mdir / "qwen.tflite", tmp_path_factory.mktemp("chat-page-server"),
                       "--token-delay", "0.05")
    yield srv
    srv.stop()


def open_page(browser, server, width: int = 1000):
    context = browser.new_context(viewport={"width": width, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda exc: pg.errors.append(str(exc)))
    pg.goto(server.url)
    pg.wait_for_selector("#model option", state="attached")
    return context, pg


@pytest.fixture
def page(browser, server):
    context, pg = open_page(browser, server)
    yield pg
    context.close()
    assert not pg.errors, f"JavaScript errors: {pg.errors}"


def send(pg, text: str, max_tokens: int = 12) -> dict:
    """Type and press Enter; return the JSON body the page sent."""
    pg.fill("#max-tokens", str(max_tokens))
    pg.fill("#seed", "3")
    if pg.is_checked("#filter"):
        pg.click("#filter")  # a random tiny model's words: no filter retries in the way
    pg.fill("#chat-input", text)
    with pg.expect_request("**/v1/chat/completions") as req:
        pg.press("#chat-input", "Enter")
    return json.loads(req.value.post_data)


def wait_replied(pg, timeout: float = 30_000) -> None:
    pg.wait_for_selector("#send[aria-busy=false]", state="attached", timeout=timeout)


def bubbles(pg) -> list[tuple[str, str]]:
    return [(li.get_attribute("class").split()[0], li.text_content())
            for li in pg.query_selector_all("#messages li")]


def test_models_list_the_chat_template(server):
    status, data = server.get("/api/models")
    by_id = {m["id"]: m for m in data["models"]}
    assert status == 200
    assert by_id["qwen.tflite"]["chat_template"] == "qwen2.5"
    assert by_id["gpt2.tflite"]["chat_template"] is None
    assert by_id["qwen.tflite"]["model_type"] == "qwen"
    status, data = server.get("/v1/models")
    cards = {m["id"]: m["pocketlm"] for m in data["data"]}
    assert cards["qwen.tflite"]["chat_template"] == "qwen2.5"
    assert cards["qwen.tflite"]["sequence_length"] == SEQ


def test_opens_in_chat_mode_and_a_reply_streams_into_a_bubble(page):
    assert page.get_attribute("body", "data-mode") == "chat"
    assert page.is_visible("#chat-view") and page.is_hidden("#story-view")
    assert page.get_attribute("#mode-chat", "aria-pressed") == "true"
    assert active(page) == "chat-input"
    page.fill("#system", "You are terse.")
    sent = send(page, "Hello there, how are you?", max_tokens=40)
    assert sent["stream"] is True and sent["model"] == "qwen.tflite"
    assert sent["messages"] == [{"role": "system", "content": "You are terse."},
                                {"role": "user", "content": "Hello there, how are you?"}]
    assert "context_window" not in sent and "prompt" not in sent
    assert page.is_visible("#chat-stop")
    lengths = []
    while page.get_attribute("#send", "aria-busy") == "true":
        lengths.append(len(page.text_content("#messages li.assistant") or ""))
        page.wait_for_timeout(20)
    assert len({n for n in lengths if n > 0}) >= 3, f"no streaming seen: {lengths}"
    got = bubbles(page)
    assert got[0] == ("user", "Hello there, how are you?") and got[1][0] == "assistant"
    assert got[1][1] and len(got) == 2
    assert page.input_value("#chat-input") == "" and active(page) == "chat-input"
    usage = page.text_content("#chat-usage")
    m = re.fullmatch(r"(\d+) of 128 tokens used, about (\d+) more turns? fit.*", usage)
    assert m, usage
    used, more = int(m.group(1)), int(m.group(2))
    assert 0 < used <= SEQ and more == (SEQ - used) // used

    # The next message sends the whole conversation, the reply included.
    second = send(page, "Tell me more.")
    assert [x["role"] for x in second["messages"]] == ["system", "user", "assistant", "user"]
    assert second["messages"][2]["content"] == got[1][1]
    wait_replied(page)
    assert [r for r, _ in bubbles(page)] == ["user", "assistant"] * 2
    usage2 = page.text_content("#chat-usage")
    used2 = int(re.match(r"(\d+) of 128 tokens used", usage2).group(1))
    # A random model's reply can take more tokens once rendered back into the prompt than
    # it was generated as: then the first turn no longer fits, and the page says so.
    assert used2 > used or "no longer sees the 1 oldest turn." in usage2, (used, usage2)

    # Kept across a reload, system prompt included.
    page.reload()
    page.wait_for_selector("#messages li", state="attached")
    assert [r for r, _ in bubbles(page)] == ["user", "assistant"] * 2
    assert page.input_value("#system") == "You are terse."
    assert page.get_attribute("body", "data-mode") == "chat"


def test_stop_ends_the_stream_and_reset_clears(page):
    page.click("#reset")
    send(page, "Say something long.", max_tokens=60)
    page.wait_for_selector("#messages li.assistant:not(:empty)", timeout=20_000)
    page.click("#chat-stop")
    wait_replied(page, 2_000)
    assert page.is_hidden("#chat-stop") and active(page) == "chat-input"
    stopped = page.text_content("#messages li.assistant")
    page.wait_for_timeout(500)  # nothing more arrives after Stop
    assert page.text_content("#messages li.assistant") == stopped
    assert "stopped" in page.get_attribute("#messages li.assistant", "class")
    assert len(stopped) > 0 and page.is_hidden("#message")

    # Escape stops too.
    send(page, "Again, please.", max_tokens=60)
    page.wait_for_selector("#messages li.assistant:nth-of-type(2)", state="attached")
    page.keyboard.press("Escape")
    wait_replied(page, 2_000)

    page.click("#reset")
    assert bubbles(page) == [] and active(page) == "chat-input"
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    assert bubbles(page) == []


def test_shift_enter_is_a_new_line_and_empty_is_refused(page):
    page.fill("#chat-input", "one")
    page.press("#chat-input", "Shift+Enter")
    page.type("#chat-input", "two")
    assert page.input_value("#chat-input") == "one\ntwo" and bubbles(page) == []
    page.fill("#chat-input", "   ")
    page.click("#send")
    assert page.is_visible("#message") and "Type a message" in page.text_content("#message")
    assert active(page) == "chat-input"


def test_a_model_without_template_selects_story_and_the_switch_works(page):
    page.select_option("#model", "gpt2.tflite")
    assert page.get_attribute("body", "data-mode") == "story"
    assert page.is_visible("#story-view") and page.is_hidden("#chat-view")
    page.click("#mode-chat")  # the user may chat with it anyway (the plain transcript)
    assert page.is_visible("#chat-view") and active(page) == "chat-input"
    send(page, "Hello")
    wait_replied(page)
    assert [r for r, _ in bubbles(page)][-2:] == ["user", "assistant"]
    assert re.match(r"\d+ of 64 tokens used", page.text_content("#chat-usage"))
    page.click("#mode-story")
    assert page.is_visible("#story-view") and active(page) == "story"
    page.select_option("#model", "qwen.tflite")
    assert page.get_attribute("body", "data-mode") == "chat"


def test_a_refused_message_goes_back_to_the_input(page):
    assert page.get_attribute("body", "data-mode") == "chat", page.text_content("#model-info")
    page.click("#reset")
    page.fill("#max-tokens", "9999")  # over the server's limit: a 400 naming the field
    page.fill("#chat-input", "Hello")
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#message:not([hidden])")
    assert "max_tokens" in page.text_content("#message").lower()
    assert bubbles(page) == [] and page.input_value("#chat-input") == "Hello"

    # Too long for the window (refused in the stream): the same.
    page.fill("#max-tokens", "12")
    long = "many words " * 80
    page.fill("#chat-input", long)
    page.press("#chat-input", "Enter")
    page.wait_for_selector("#message:has-text('window')")
    wait_replied(page)
    assert bubbles(page) == [] and page.input_value("#chat-input") == long


def test_phone_width_chat_does_not_scroll_sideways(browser, server):
    context, pg = open_page(browser, server, width=390)
    try:
        send(pg, "A message to wrap on a phone, with a_very_long_word_without_spaces_too.")
        wait_replied(pg)
        assert [r for r, _ in bubbles(pg)] == ["user", "assistant"] and pg.is_hidden("#message")
        scroll, inner = pg.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert inner == 390 and scroll <= inner, (scroll, inner)
        assert _overflowing(pg) == []
        assert not pg.errors
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "app-chat-screenshot-390.png"), full_page=True)
    finally:
        context.close()
