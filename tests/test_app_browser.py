"""The web app in a real browser: Playwright drives Debian's Chromium (``apt-get install
chromium``; Playwright's own browser download is never used) against a real server."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest

from .app_server import Server, models_dir, wait_for
from .conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
STORY = ("Once upon a time, in a quiet village by the sea, there lived an old fisherman "
         "who")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(),
                                reason="needs Debian's chromium: apt-get install chromium")


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs playwright: pip install .[test]")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def mdir(tiny_models, tmp_path_factory):
    return models_dir(tiny_models, tmp_path_factory.mktemp("browser-models"))


@pytest.fixture(scope="module")
def server(mdir, tmp_path_factory):
    # Slowed down so that streaming is visible to the browser, token by token.
    srv = Server.start(mdir, tmp_path_factory.mktemp("browser-server"), "--token-delay", "0.03")
    yield srv
    srv.stop()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1000, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"],
                              origin=server.url.rstrip("/"))
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.goto(server.url)
    pg.wait_for_selector("#model option", state="attached")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def generate(pg, button: str = "#generate") -> dict:
    """Click, and return the JSON body the page sent."""
    with pg.expect_request("**/v1/completions") as req:
        pg.click(button)
    return json.loads(req.value.post_data)


# Waits use selectors, not wait_for_function: the page's CSP forbids eval, which
# Playwright's function polling needs (and the tests run under the real CSP).
def wait_done(pg, timeout: float = 20_000) -> None:
    pg.wait_for_selector("#generate[aria-busy=false]", state="attached", timeout=timeout)


def suggestion(pg) -> str:
    return pg.text_content("#suggestion") or ""


def test_type_generate_stream_accept_and_new_suggestion(page):
    page.fill("#seed", "5")  # reproducible, and "New suggestion" moves to the next seed
    page.fill("#story", STORY)
    sent = generate(page)
    assert sent["prompt"] == STORY and sent["stream"] is True and sent["seed"] == 5
    # Busy while it streams: the spinner shows, and text grows piece by piece.
    assert page.get_attribute("#generate", "aria-busy") == "true"
    assert page.is_visible("#generate .spinner") and page.is_visible("#stop")
    lengths: list[int] = []
    while page.get_attribute("#generate", "aria-busy") == "true":
        lengths.append(len(suggestion(page)))
        page.wait_for_timeout(20)
    partial = [n for n in lengths if 0 < n]
    assert len(set(partial)) >= 3, f"no streaming seen: {lengths}"
    first = suggestion(page)
    assert first and page.is_visible("#accept") and page.is_visible("#again")
    stats = page.text_content("#stats")
    assert re.search(r"first token \d+ ms · [\d.]+ tokens/s · 30 tokens", stats), stats
    assert page.text_content("#sent").endswith(f"“{STORY}”")
    # The suggestion is shown right after the typed text, in the editor itself.
    box = page.locator("#suggestion").bounding_box()
    editor = page.locator("#editor").bounding_box()
    assert editor["y"] <= box["y"] <= editor["y"] + editor["height"]

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "app-screenshot.png"), full_page=True)

    again = generate(page, "#again")
    assert again["seed"] == 6
    wait_done(page)
    second = suggestion(page)
    assert second and second != first

    page.click("#accept")
    assert page.input_value("#story") == STORY + second
    assert suggestion(page) == "" and page.is_hidden("#accept")


def test_typing_discards_the_suggestion(page):
    page.fill("#story", STORY)
    generate(page)
    wait_done(page)
    assert suggestion(page)
    page.type("#story", " and")
    assert suggestion(page) == "" and page.is_hidden("#accept")


def _last_words(text: str, n: int) -> str:
    starts = [m.start() for m in re.finditer(r"\S+", text)]
    return text[starts[-n]:] if len(starts) > n else text


def test_context_window_slider_changes_what_is_sent(page):
    # Twenty short words (the tiny test model's window is 64 tokens), with spacing and
    # punctuation that must survive the window.
    text = " ".join(f"w{i}" for i in range(1, 21)).replace(" w17", ",  w17")
    page.fill("#max-tokens", "4")
    page.fill("#story", text)
    page.fill("#window", "5")
    assert page.text_content("#window-value") == "5 words"
    body = generate(page)
    assert body["context_window"] == 5 and body["context_unit"] == "words"
    wait_done(page)
    assert page.get_attribute("#sent", "data-prompt") == _last_words(text, 5) \
        == "w16,  w17 w18 w19 w20"

    page.fill("#window", "12")
    generate(page)
    wait_done(page)
    assert page.get_attribute("#sent", "data-prompt") == _last_words(text, 12)

    page.uncheck("#window-on")
    assert page.is_disabled("#window")
    body = generate(page)
    assert "context_window" not in body
    wait_done(page)
    assert page.get_attribute("#sent", "data-prompt") == text

    page.check("#window-on")
    page.select_option("#unit", "tokens")
    page.fill("#window", "8")
    body = generate(page)
    assert body["context_window"] == 8 and body["context_unit"] == "tokens"
    wait_done(page)
    assert "(8 tokens)" in page.text_content("#sent")


def test_profanity_message_and_switching_the_filter_off(page):
    page.fill("#story", "The captain shouted: what the f*ck is that ship")
    generate(page)
    page.wait_for_selector("#message:not([hidden])")
    assert page.get_attribute("#message", "data-kind") == "content_filter"
    assert "profanity filter" in page.text_content("#message")
    assert "f*ck" in page.text_content("#message")
    assert suggestion(page) == "" and page.is_hidden("#accept")

    page.uncheck("#filter")
    body = generate(page)
    assert body["profanity_filter"] is False
    wait_done(page)
    assert suggestion(page) and page.is_hidden("#message")


def test_switching_models(page, server):
    options = page.eval_on_selector_all(
        "#model option", "os => os.map(o => [o.value, o.disabled, o.textContent])")
    assert [o[:2] for o in options] == [["broken.tflite", True], ["tiny-f16.tflite", False],
                                        ["tiny-int8.tflite", False]]
    assert "not compatible" in options[0][2]
    assert page.input_value("#model") == "tiny-f16.tflite"
    assert "float16" in page.text_content("#model-info")

    page.select_option("#model", "tiny-int8.tflite")
    info = page.text_content("#model-info")
    assert "dynamic-int8" in info and "pocketlm.kv-cache v2" in info and "MiB" in info
    page.fill("#story", STORY)
    body = generate(page)
    assert body["model"] == "tiny-int8.tflite"
    wait_done(page)
    assert page.get_attribute("#stats", "data-model") == "tiny-int8.tflite"
    assert "tiny-int8.tflite" in {w["model"] for w in server.health()["workers"]}

    page.reload()  # the choice is remembered
    page.wait_for_selector("#model option", state="attached")
    assert page.input_value("#model") == "tiny-int8.tflite"
    page.select_option("#model", "tiny-f16.tflite")


def test_copy_and_clear(page):
    page.fill("#story", STORY)
    page.click("#copy")
    page.wait_for_selector("#message:not([hidden])")
    assert page.get_attribute("#message", "data-kind") == "copied"
    assert page.evaluate("navigator.clipboard.readText()") == STORY
    page.click("#clear")
    assert page.input_value("#story") == "" and suggestion(page) == ""


def test_stop_cancels_generation(page, server):
    before = server.health()["stats"]["cancelled"]
    page.fill("#max-tokens", "60")
    page.fill("#story", STORY)
    generate(page)
    page.wait_for_selector("#suggestion:not(:empty)")
    page.click("#stop")
    assert page.get_attribute("#generate", "aria-busy") == "false"
    assert wait_for(lambda: server.health()["stats"]["cancelled"] > before, 5)
    page.fill("#max-tokens", "30")


def test_model_failure_is_reported(page, server):
    page.fill("#max-tokens", "60")
    page.fill("#story", STORY)
    generate(page)
    page.wait_for_selector("#suggestion:not(:empty)")
    busy = [w for w in server.health()["workers"] if w["busy"]]
    os.kill(busy[0]["pid"], signal.SIGKILL)
    page.wait_for_selector("#message:not([hidden])")
    assert page.get_attribute("#message", "data-kind") == "model_failed"
    assert "The model failed" in page.text_content("#message")
    page.fill("#max-tokens", "30")
    generate(page)  # the worker restarts
    wait_done(page)
    assert suggestion(page) and page.is_hidden("#message")


def test_no_model_message(browser, tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    srv = Server.start(empty, tmp_path / "srv")
    try:
        pg = browser.new_page()
        pg.goto(srv.url)
        pg.wait_for_selector("#message:not([hidden])")
        assert pg.get_attribute("#message", "data-kind") == "no_model"
        assert "pocketlm convert" in pg.text_content("#message")
        pg.close()
    finally:
        srv.stop()


def test_no_suggestion_after_regenerations(browser, server, mdir, tmp_path):
    """Every attempt has a blocked word (a --block-words list built from what each attempt
    generates), so the page shows the retries and then "No suggestion"."""
    from pocketlm.app.settings import RETRY_TEMPERATURE, RETRY_TOP_K

    base = {"prompt": STORY, "max_tokens": 30, "temperature": 0, "top_k": 0,
            "profanity_filter": False, "seed": 3}
    texts = [server.post(base)[1]["choices"][0]["text"]]
    for k in range(1, 4):
        texts.append(server.post({**base, "seed": 3 + k, "temperature": RETRY_TEMPERATURE,
                                  "top_k": RETRY_TOP_K})[1]["choices"][0]["text"])
    # Whole words only (the first piece may continue the prompt's last word).
    blocked = [next(w for w in t.split()[1:] if w.isalpha() and len(w) >= 4
                    and w.lower() not in STORY.lower()) for t in texts]
    words = tmp_path / "block.txt"
    words.write_text("\n".join(blocked))
    srv = Server.start(mdir, tmp_path / "srv", "--block-words", str(words))
    try:
        pg = browser.new_page()
        pg.goto(srv.url)
        pg.wait_for_selector("#model option", state="attached")
        pg.fill("#temperature", "0")
        pg.fill("#top-k", "0")
        pg.fill("#seed", "3")
        pg.fill("#story", STORY)
        sent = generate(pg)
        wait_done(pg)
        assert suggestion(pg) == "No suggestion", (sent, blocked, texts)
        assert sent["seed"] == 3 and sent["temperature"] == 0
        assert pg.get_attribute("#message", "data-kind") == "no_suggestion"
        assert "4 attempts" in pg.text_content("#stats")
        assert pg.is_hidden("#accept")
        pg.close()
    finally:
        srv.stop()


# -- newcomer friction (issue 14): a phone's width, focus, shortcuts, reloads, a stopped server
LONG_NAME = "pocketlm_gpt2_shakespeare-dynamic-int8-calibrated-on-tinyshakespeare.tflite"


@pytest.fixture(scope="module")
def long_names_server(tiny_models, tmp_path_factory):
    """Model files with long names, as real ones have: the picker must still fit a phone."""
    import shutil

    root = tmp_path_factory.mktemp("long-names")
    shutil.copy(tiny_models["dynamic-int8"], root / LONG_NAME)
    (root / "an-old-export-that-is-not-a-language-model-at-all.tflite").write_bytes(b"junk")
    srv = Server.start(root, tmp_path_factory.mktemp("long-names-server"))
    yield srv
    srv.stop()


def _overflowing(pg) -> list[str]:
    """Elements whose box reaches past the right edge of the viewport."""
    return pg.evaluate("""[...document.querySelectorAll('body *')]
        .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > innerWidth + 0.5)
        .map(e => e.tagName + '#' + e.id + '.' + e.className)""")


@pytest.mark.parametrize("width", [390, 320])
def test_phone_width_does_not_scroll_sideways(browser, long_names_server, width):
    context = browser.new_context(viewport={"width": width, "height": 844})
    pg = context.new_page()
    try:
        pg.goto(long_names_server.url)
        pg.wait_for_selector("#model option", state="attached")
        assert pg.input_value("#model") == LONG_NAME
        pg.fill("#story", STORY)
        generate(pg)
        wait_done(pg)  # the suggestion and the Accept / New suggestion buttons are shown too
        assert pg.is_visible("#model") and pg.is_visible("#accept")
        box = pg.locator("#model").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= width
        scroll, inner = pg.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert inner == width and scroll <= inner, (scroll, inner)
        assert _overflowing(pg) == []
        if width == 390:
            ARTIFACTS.mkdir(exist_ok=True)
            pg.screenshot(path=str(ARTIFACTS / "app-screenshot-390.png"), full_page=True)
    finally:
        context.close()


def active(pg) -> str:
    return pg.evaluate("document.activeElement.id || document.activeElement.tagName")


def test_focus_stays_in_the_story(page):
    page.fill("#story", STORY)
    generate(page)
    assert active(page) == "story"  # Generate is disabled while it runs: not the page body
    wait_done(page)
    assert active(page) == "story"
    generate(page, "#again")  # New suggestion hides itself while it runs
    assert active(page) == "story"
    page.wait_for_selector("#suggestion:not(:empty)")
    page.click("#stop")  # Stop hides itself
    assert page.get_attribute("#generate", "aria-busy") == "false"
    assert active(page) == "story"
    page.keyboard.type(" and")  # typing goes on where it was: at the end of the story
    assert page.input_value("#story") == STORY + " and"


def test_keyboard_shortcuts_are_shown_and_work(page):
    hint = page.locator("#generate .key")
    assert hint.is_visible() and hint.text_content() == "Ctrl+Enter"
    assert page.get_attribute("#generate", "aria-keyshortcuts") == "Control+Enter"
    page.fill("#seed", "4")
    page.fill("#story", STORY)
    page.focus("#story")
    with page.expect_request("**/v1/completions") as req:
        page.keyboard.press("Control+Enter")
    assert json.loads(req.value.post_data)["prompt"] == STORY
    assert page.input_value("#story") == STORY  # no newline typed
    wait_done(page)
    first = suggestion(page)
    assert first and page.locator("#accept .key").text_content() == "Tab"

    # From a settings field too; after New suggestion (seed + 1) Ctrl+Enter starts over.
    generate(page, "#again")
    wait_done(page)
    page.focus("#max-tokens")
    with page.expect_request("**/v1/completions") as req:
        page.keyboard.press("Control+Enter")
    assert json.loads(req.value.post_data)["seed"] == 4
    wait_done(page)
    assert suggestion(page) == first

    # Escape stops, and says so on the Stop button.
    page.fill("#max-tokens", "60")
    generate(page)
    page.wait_for_selector("#suggestion:not(:empty)")
    assert page.locator("#stop .key").text_content() == "Esc" and page.is_visible("#stop .key")
    page.keyboard.press("Escape")
    assert page.get_attribute("#generate", "aria-busy") == "false" and page.is_hidden("#stop")
    partial = suggestion(page)
    page.keyboard.press("Tab")  # accepts what came before the stop
    assert partial and page.input_value("#story") == STORY + partial and suggestion(page) == ""


def test_story_and_settings_survive_a_reload(page):
    text = STORY + "\n\nA second paragraph, with “quotes” and ünïcode."
    page.fill("#story", text)
    page.fill("#temperature", "0.5")
    page.fill("#seed", "11")
    page.uncheck("#filter")
    page.select_option("#unit", "tokens")
    page.reload()
    page.wait_for_selector("#model option", state="attached")
    assert page.input_value("#story") == text
    assert page.input_value("#temperature") == "0.5" and page.input_value("#seed") == "11"
    assert not page.is_checked("#filter") and page.input_value("#unit") == "tokens"
    # What is restored is what is sent.
    body = generate(page)
    assert body["prompt"] == text and body["seed"] == 11 and body["profanity_filter"] is False
    wait_done(page)
    # Accepting and clearing are remembered too.
    page.click("#accept")
    accepted = page.input_value("#story")
    page.reload()
    assert page.input_value("#story") == accepted != text
    page.click("#clear")
    page.reload()
    assert page.input_value("#story") == ""


def test_a_stopped_server_is_reported_and_the_page_reconnects(browser, mdir, tmp_path):
    srv = Server.start(mdir, tmp_path / "srv", "--token-delay", "0.05")
    pg = browser.new_page()
    try:
        pg.goto(srv.url)
        pg.wait_for_selector("#model option", state="attached")
        pg.fill("#max-tokens", "60")
        pg.fill("#story", STORY)
        generate(pg)
        pg.wait_for_selector("#suggestion:not(:empty)")
        srv.stop()  # while it streams: its workers stop too
        pg.wait_for_selector("#message:not([hidden])")
        message = pg.text_content("#message")
        assert pg.get_attribute("#message", "data-kind") == "server_gone", message
        assert "server stopped or cannot be reached" in message and "exit code" not in message
        wait_done(pg)

        generate(pg)  # Generate again while it is down
        pg.wait_for_selector("#message[data-kind=server_gone]:not([hidden])")
        assert "model failed" not in pg.text_content("#message")
        wait_done(pg)

        # Started again on the same port: the page notices by itself and works again.
        again = Server.start(mdir, tmp_path / "srv2", "--port", str(srv.port))
        try:
            pg.wait_for_selector("#message[data-kind=reconnected]", state="attached",
                                 timeout=15_000)
            generate(pg)
            wait_done(pg)
            assert suggestion(pg) and pg.get_attribute("#message", "data-kind") != "server_gone"
        finally:
            again.stop()
    finally:
        pg.close()
        srv.stop()
