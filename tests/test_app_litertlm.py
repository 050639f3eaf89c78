"""``pocketlm serve`` with ``.litertlm`` bundles beside ``.tflite`` files, against a real
server process and the official ``openai`` client: pocketlm's bundles are listed and
complete exactly as ``pocketlm generate`` does on the same file; every bundle pocketlm did
not make, or that was damaged, is listed as not compatible with a one-line reason and
refused with a 400, never a 500 or a crash."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .app_server import Server, openai_client, served
from .conftest import REPO, needs_convert
from .tiny_bundles import build, damaged, tiny_bundle, without_metadata

openai = pytest.importorskip("openai", reason="needs the official client: pip install openai")
pytestmark = needs_convert

PROMPT = "Once upon a time there was a quiet village by the sea, and"
NEW = 12
COMPATIBLE = ["gpt2.litertlm", "gpt2.tflite", "llama-sp.litertlm", "llama.litertlm"]
# file -> words its reason must hold
INCOMPATIBLE = {
    "other.litertlm": "pocketlm did not make",  # another contract, a SentencePiece tokenizer
    "bare.litertlm": "pocketlm did not make",  # no pocketlm metadata, an HF tokenizer
    "two-models.litertlm": "one TFLite model",
    "gpt2-no-tokenizer.litertlm": "no pocketlm tokenizer",
    "llama-bad-sp.litertlm": "SentencePiece tokenizer section cannot be used",
    "cut-header.litertlm": "truncated or corrupt",
    "cut-model.litertlm": "outside the file",
    "garbled-header.litertlm": "corrupt",
    "zeroed-model-head.litertlm": "TFLite model in it",
    "noise-model.litertlm": "TFLite model in it",
    "magic-then-noise.litertlm": "corrupt",
}


@pytest.fixture(scope="module")
def mdir(tmp_path_factory):
    from pocketlm.contract import METADATA_KEY, TOKENIZER_METADATA_KEY
    from pocketlm.litertlm import hf_tokenizer_json

    work = tmp_path_factory.mktemp("bundle-parts")
    root = tmp_path_factory.mktemp("bundle-models")
    gpt2, llama = tiny_bundle("gpt2", work), tiny_bundle("llama", work)
    for path in (gpt2.tflite, gpt2.bundle, llama.bundle):
        shutil.copy(path, root / path.name)
    sp = llama.tokenizer.proto
    meta = "llm_model_type { generic_model {} }\nmax_num_tokens: 64\n"
    # pocketlm's model without its tokenizer entry: the bundle's SentencePiece section stands in
    no_tok = without_metadata(llama.tflite, work / "llama-no-tok.tflite", TOKENIZER_METADATA_KEY)
    build(root / "llama-sp.litertlm", [no_tok], sentencepiece=sp, metadata=meta)
    build(root / "llama-bad-sp.litertlm", [no_tok], sentencepiece=os.urandom(3000),
          metadata=meta)
    # Bundles another tool made: another contract, or no pocketlm metadata at all.
    other = without_metadata(llama.tflite, work / "other.tflite", TOKENIZER_METADATA_KEY,
                             replace={METADATA_KEY: b'{"contract": "x"}'})
    build(root / "other.litertlm", [other], sentencepiece=sp, metadata=meta)
    bare = without_metadata(gpt2.tflite, work / "bare.tflite", METADATA_KEY,
                            TOKENIZER_METADATA_KEY)
    hf = hf_tokenizer_json(gpt2.tokenizer)
    build(root / "bare.litertlm", [bare], hf_json=hf, metadata=meta)
    build(root / "two-models.litertlm", [gpt2.tflite, gpt2.tflite], hf_json=hf, metadata=meta)
    no_hf = without_metadata(gpt2.tflite, work / "gpt2-no-tok.tflite", TOKENIZER_METADATA_KEY)
    build(root / "gpt2-no-tokenizer.litertlm", [no_hf], hf_json=hf, metadata=meta)
    for name, path in damaged(gpt2.bundle, work / "damaged").items():
        if f"{name}.litertlm" in INCOMPATIBLE:
            shutil.copy(path, root / path.name)
    return root


@pytest.fixture(scope="module")
def server(mdir, tmp_path_factory):
    yield from served(mdir, tmp_path_factory)


@pytest.fixture(scope="module")
def client(server):
    return openai_client(server)


def _generate_cli(path) -> str:
    """What ``pocketlm generate`` prints for the completion alone (greedy, as the server)."""
    proc = subprocess.run([sys.executable, "-m", "pocketlm.cli", "generate", str(path), PROMPT,
                           "--max-new-tokens", str(NEW), "--no-prompt"], capture_output=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode("utf-8")
    assert out.endswith("\n")
    return out[:-1]


def _complete(client, model: str, **kw) -> tuple[str, str]:
    answer = client.completions.create(model=model, prompt=PROMPT, max_tokens=NEW,
                                       temperature=0, extra_body={"profanity_filter": False},
                                       **kw)
    return answer.model, answer.choices[0].text


def test_the_catalog_lists_both_kinds(server, mdir):
    status, models = server.get("/v1/models")
    assert status == 200
    assert [m["id"] for m in models["data"]] == COMPATIBLE
    for card in models["data"]:
        assert card["pocketlm"]["contract"] == "pocketlm.kv-cache v2"
        assert card["pocketlm"]["size_bytes"] == os.path.getsize(mdir / card["id"])
        assert card["pocketlm"]["sequence_length"] == 64
    status, picker = server.get("/api/models")
    listed = {m["id"]: m for m in picker["models"]}
    assert sorted(listed) == sorted(COMPATIBLE + list(INCOMPATIBLE))
    assert picker["default"] == "gpt2.litertlm"  # the first compatible by name, of any kind
    for name, words in INCOMPATIBLE.items():
        entry = listed[name]
        assert entry["compatible"] is False, entry
        reason = entry["reason"]
        assert words in reason and "\n" not in reason and len(reason) < 400, (name, reason)
        # Server paths stay private: neither the models folder nor pocketlm's cache (where a
        # bundle's model is unpacked) shows.
        assert str(mdir) not in reason and os.environ["POCKETLM_CACHE"] not in reason
    # Advice a client can use: the app has no --engine flag; generate has.
    assert "the app runs bundles pocketlm made" in listed["other.litertlm"]["reason"]


def test_a_bundle_completes_as_generate_does_on_the_same_file(client, mdir):
    """The openai client's greedy completion of a bundle is exactly ``pocketlm generate``'s
    on that file, named with or without its suffix, plain and streamed."""
    texts = {}
    for name in ("llama.litertlm", "gpt2.litertlm", "llama-sp.litertlm", "gpt2.tflite"):
        want = _generate_cli(mdir / name)
        assert len(want) >= 4, want  # a real continuation
        bare = name.rsplit(".", 1)[0]
        # A bare name means the bundle when no .tflite of that name exists (gpt2: below).
        alone = not (mdir / f"{bare}.tflite").exists()
        for asked in (name, bare) if alone else (name,):
            model, text = _complete(client, asked)
            assert model == name and text == want, (asked, text, want)
        stream = client.completions.create(model=name, prompt=PROMPT, max_tokens=NEW,
                                           temperature=0, stream=True,
                                           extra_body={"profanity_filter": False})
        assert "".join(c.choices[0].text for c in stream if c.choices) == want
        texts[name] = want
    # One model, three files: the bundle is the .tflite; the SentencePiece section is the
    # tokenizer pocketlm's entry held.
    assert texts["gpt2.litertlm"] == texts["gpt2.tflite"]
    assert texts["llama-sp.litertlm"] == texts["llama.litertlm"]


def test_a_bare_name_prefers_the_tflite(server, client, mdir, tmp_path):
    """``gpt2`` names gpt2.tflite when both exist (the order MODEL_SUFFIXES gives)."""
    model, _ = _complete(client, "gpt2")
    assert model == "gpt2.tflite"


def test_bundles_pocketlm_cannot_run_are_refused_with_their_reason(client, server):
    for name, words in INCOMPATIBLE.items():
        for asked in (name, name.rsplit(".", 1)[0]):
            with pytest.raises(openai.BadRequestError) as err:
                _complete(client, asked)
            body = err.value.body
            assert body["type"] == "model_not_compatible" and body["param"] == "model"
            assert words in body["message"] and "\n" not in body["message"], body
    assert server.get("/health")[0] == 200
    log = server.output()
    assert "Traceback" not in log and '" 500' not in log, log[-2000:]


def test_serve_takes_a_bundle_and_refuses_one_it_cannot_run(mdir, tmp_path):
    srv = Server.start(mdir / "llama.litertlm", tmp_path / "srv")
    try:
        assert srv.health()["default_model"] == "llama.litertlm"
        status, body = srv.post({"prompt": PROMPT, "max_tokens": 4, "temperature": 0})
        assert status == 200 and body["model"] == "llama.litertlm", body
    finally:
        srv.stop()
    odd = tmp_path / "model.gguf"
    odd.write_bytes(b"GGUF")
    for target, words in ((mdir / "other.litertlm", "pocketlm did not make"),
                          (mdir / "cut-model.litertlm", "outside the file"),
                          (odd, "not a .tflite file or a .litertlm bundle")):
        proc = subprocess.run([sys.executable, "-m", "pocketlm.cli", "serve", str(target),
                               "--port", "0"], capture_output=True, text=True, timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and words in lines[0], proc.stderr
        assert "Traceback" not in proc.stderr


def test_serving_a_bundle_never_imports_tensorflow(mdir, tmp_path):
    """Heavy packages are replaced by stubs that leave a mark if anything imports them: the
    server reads, unpacks and runs a bundle (SentencePiece section included) without them."""
    stubs, marks = tmp_path / "stubs", tmp_path / "imported"
    for name in ("tensorflow", "keras", "keras_hub", "tf_keras", "tensorflow_text"):
        (stubs / name).mkdir(parents=True)
        (stubs / name / "__init__.py").write_text(
            f"import os\nopen({str(marks)!r} + '-{name}-' + str(os.getpid()), 'w').close()\n"
            f"raise ImportError('blocked by the test: {name}')\n")
    cache = tmp_path / "cache"  # a fresh cache: the bundles are unpacked again here
    env = {"PYTHONPATH": os.pathsep.join([str(stubs), str(REPO / "src")]),
           "POCKETLM_CACHE": str(cache)}
    srv = Server.start(mdir / "llama-sp.litertlm", tmp_path / "srv", env=env)
    try:
        for model in ("llama-sp.litertlm", "gpt2.litertlm"):
            status, body = srv.post({"prompt": PROMPT, "max_tokens": 4, "model": model})
            assert status == 200 and body["choices"][0]["text"], body
    finally:
        srv.stop()
    assert list((cache / "litertlm").iterdir())  # the bundles were unpacked, without TF
    assert not list(tmp_path.glob("imported-*")), "something imported a heavy package"


def test_a_folder_of_bundles_only(mdir, tmp_path):
    """A folder holding only bundles serves its first compatible one (in-process config)."""
    from pocketlm.app.launch import build_config
    from pocketlm.cli import build_parser

    only = tmp_path / "only"
    only.mkdir()
    for name in ("other.litertlm", "llama.litertlm", "cut-model.litertlm"):
        shutil.copy(mdir / name, only / name)
    cfg = build_config(build_parser().parse_args(["serve", str(only), "--port", "0"]),
                       lambda _m: None)
    assert cfg.default_model == "llama.litertlm" and cfg.models_dir == only.resolve()


def test_the_page_lists_bundles_and_runs_one(server):
    """In real Chromium: the model picker offers the bundles, greys out those pocketlm
    cannot run with their reason, and a chosen bundle completes the story."""
    from .test_app_browser import CHROMIUM, CHROMIUM_ARGS, generate, suggestion, wait_done

    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium: apt-get install chromium")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="needs playwright: pip install .[test]")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                    headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(server.url)
            page.wait_for_selector("#model option", state="attached")
            options = {o[0]: o[1:] for o in page.eval_on_selector_all(
                "#model option", "os => os.map(o => [o.value, o.disabled, o.textContent])")}
            assert sorted(options) == sorted(COMPATIBLE + list(INCOMPATIBLE))
            for name in COMPATIBLE:
                assert options[name][0] is False, name
            for name in INCOMPATIBLE:
                assert options[name][0] is True and "not compatible" in options[name][1]
            page.select_option("#model", "llama.litertlm")
            assert "pocketlm.kv-cache v2" in page.text_content("#model-info")
            page.fill("#story", PROMPT)
            assert generate(page)["model"] == "llama.litertlm"
            wait_done(page)
            assert suggestion(page)
            assert page.get_attribute("#stats", "data-model") == "llama.litertlm"
            assert not errors, errors
        finally:
            browser.close()
