// pocketlm story autocomplete: type, Generate, then Accept or ask for a New suggestion.
// Talks to the same server's OpenAI-style API (POST /v1/completions with stream: true).
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  story: $("story"), mirror: $("mirror"), suggestion: $("suggestion"), generate: $("generate"),
  stop: $("stop"), accept: $("accept"), again: $("again"), copy: $("copy"), clear: $("clear"),
  message: $("message"), stats: $("stats"), sent: $("sent"), model: $("model"),
  modelInfo: $("model-info"), windowOn: $("window-on"), window: $("window"),
  windowValue: $("window-value"), unit: $("unit"), maxTokens: $("max-tokens"),
  temperature: $("temperature"), topK: $("top-k"), topP: $("top-p"), seed: $("seed"),
  filter: $("filter"), generateKey: $("generate-key"),
};
const WINDOW_RANGES = { words: [5, 50, 20], tokens: [8, 256, 64] };
const SETTINGS = ["windowOn", "window", "unit", "maxTokens", "temperature", "topK", "topP",
  "seed", "filter"];
const state = { suggestion: "", controller: null, models: [], reroll: 0, reconnect: null };
const RECONNECT_MS = 2000;  // how often to look for a stopped server coming back
const KEYS = { settings: "pocketlm.settings", model: "pocketlm.model", story: "pocketlm.story" };

// localStorage can be missing or refuse (private windows, a full quota): the page still works.
function store(key, value) {
  try { localStorage.setItem(key, value); } catch (e) { /* not remembered */ }
}
function stored(key) {
  try { return localStorage.getItem(key); } catch (e) { return null; }
}

// -- rendering ------------------------------------------------------------------------------
function render() {
  els.mirror.textContent = els.story.value;
  els.suggestion.textContent = state.suggestion;
  const has = state.suggestion.length > 0 && !els.suggestion.classList.contains("none");
  els.accept.hidden = els.again.hidden = !has || state.controller !== null;
}

function setBusy(busy) {
  els.generate.disabled = busy;
  els.generate.classList.toggle("busy", busy);
  els.generate.querySelector(".label").textContent = busy ? "Generating…" : "Generate";
  els.generate.setAttribute("aria-busy", String(busy));
  els.stop.hidden = !busy;
  render();
  keepFocus();
}

// A focused button that is disabled or hidden (Generate, New suggestion, Stop, Accept) drops
// the focus to the page body; keep it in the story instead, where typing, Tab (accept),
// Ctrl+Enter (generate) and Escape (stop) work.
function keepFocus() {
  if (document.body.dataset.mode === "chat") return;  // chat.js keeps it in its input
  const a = document.activeElement;
  if (!a || a === document.body || (a.tagName === "BUTTON" && (a.disabled || a.hidden))) {
    els.story.focus({ preventScroll: true });
  }
}

function showMessage(text, kind = "error", info = false) {
  els.message.textContent = text;
  els.message.dataset.kind = kind;
  els.message.classList.toggle("info", info);
  els.message.hidden = false;
}

function hideMessage() {
  els.message.hidden = true;
  els.message.textContent = "";
  delete els.message.dataset.kind;
}

function clearSuggestion() {
  state.suggestion = "";
  els.suggestion.classList.remove("none");
  render();
}

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);

function showError(error, status) {
  const kind = (error && error.type) || "error";
  const msg = capital((error && error.message) || `the server answered ${status}`);
  const text = {
    content_filter: error && error.blocked
      ? `Blocked by the profanity filter: ${error.blocked.map((w) => `“${w}”`).join(", ")}. ` +
        "Edit the text, or switch the filter off in Settings."
      : `Blocked by the profanity filter: ${msg}.`,
    no_model: `No model: ${msg}.`,
    model_not_found: `Model not found: ${msg}.`,
    model_not_compatible: `Model not compatible: ${msg}. Pick another model.`,
    model_failed: `The model failed: ${msg}. Try again, or pick another model.`,
    server_busy: `Busy: ${msg}.`,
  }[kind] || msg;
  showMessage(text.replace(/\.\.$/, "."), kind);
}

// -- the server going away ------------------------------------------------------------------
// Any answer at all (even an error status) means the server is there.
const CUT_RECHECK_MS = 1000;

async function serverAlive() {
  try {
    await fetch("/health", { cache: "no-store", signal: AbortSignal.timeout(3000) });
    return true;
  } catch (e) {
    return false;
  }
}

function showServerGone() {
  showMessage(`The server stopped or cannot be reached at ${location.host}. Start it again ` +
    "(pocketlm serve): this page reconnects by itself, and your text is kept.", "server_gone");
  if (state.reconnect === null) state.reconnect = setTimeout(reconnect, RECONNECT_MS);
}

async function reconnect() {
  if (!(await serverAlive())) { state.reconnect = setTimeout(reconnect, RECONNECT_MS); return; }
  state.reconnect = null;
  if (els.message.dataset.kind === "server_gone") {
    showMessage("Reconnected to the server.", "reconnected", true);
  }
  await loadModels();  // it may have restarted with other models
}

// An error, or a stream that ended early: the server itself may be gone (stopping it also
// stops its model workers, which would otherwise read as "the model failed").
// ``ctrl``: the request it is about; a newer one started meanwhile makes it old news.
async function reportFailure(error, status, ctrl) {
  let alive = await serverAlive();
  // A stopping server may cut the stream a moment before it stops answering: look again
  // before calling it a cut.
  if (alive && !error) {
    await new Promise((resolve) => setTimeout(resolve, CUT_RECHECK_MS));
    alive = await serverAlive();
  }
  if (state.controller !== ctrl) return;
  if (!alive) { showServerGone(); return; }
  if (error) showError(error, status);
  else showMessage("The answer stopped before it was complete. Try again.", "cut");
}

// -- settings -------------------------------------------------------------------------------
function windowLabel() {
  els.windowValue.textContent = `${els.window.value} ${els.unit.value}`;
  els.window.disabled = els.unit.disabled = !els.windowOn.checked;
}

function setUnit(keepValue) {
  const [lo, hi, def] = WINDOW_RANGES[els.unit.value];
  els.window.min = lo;
  els.window.max = hi;
  if (!keepValue) els.window.value = def;
  windowLabel();
}

function saveSettings() {
  const data = {};
  for (const k of SETTINGS) data[k] = els[k].type === "checkbox" ? els[k].checked : els[k].value;
  store(KEYS.settings, JSON.stringify(data));
}

function loadSettings() {
  let data = {};
  try { data = JSON.parse(stored(KEYS.settings) || "{}"); } catch (e) { /* reset */ }
  for (const k of SETTINGS) {
    if (!(k in data)) continue;
    if (els[k].type === "checkbox") els[k].checked = Boolean(data[k]); else els[k].value = data[k];
  }
  setUnit(true);
}

function saveStory() {
  store(KEYS.story, els.story.value);
}

function loadStory() {
  const text = stored(KEYS.story);
  if (text) els.story.value = text;
}

function num(el, fallback) {
  const v = parseFloat(el.value);
  return Number.isFinite(v) ? v : fallback;
}

function requestBody() {
  const body = {
    model: els.model.value, prompt: els.story.value, stream: true,
    max_tokens: Math.max(1, Math.round(num(els.maxTokens, 30))),
    temperature: num(els.temperature, 0.8), top_k: Math.round(num(els.topK, 0)),
    top_p: num(els.topP, 1), profanity_filter: els.filter.checked,
    retry_events: true,  // stream each checked attempt; a "retry" event withdraws it
  };
  if (els.seed.value.trim() !== "") body.seed = Math.round(num(els.seed, 0)) + state.reroll;
  if (els.windowOn.checked) {
    body.context_window = Number(els.window.value);
    body.context_unit = els.unit.value;
  }
  return body;
}

// -- models ---------------------------------------------------------------------------------
function describeModel(m) {
  const mib = (m.size_bytes / 1048576).toFixed(1);
  if (!m.compatible) return `${m.id} — not compatible: ${m.reason}`;
  return `${m.id} · ${m.contract} · ${mib} MiB · ${m.quantization} · window ${m.sequence_length} tokens`;
}

async function loadModels() {
  let data;
  try {
    data = await (await fetch("/api/models", { cache: "no-store" })).json();
  } catch (e) {
    if (await serverAlive()) showMessage(`Could not list the models: ${e.message}`, "network");
    else showServerGone();
    return;
  }
  state.models = data.models;
  els.model.replaceChildren();
  for (const m of data.models) {
    const opt = new Option(m.compatible ? `${m.id} (${m.quantization}, ${(m.size_bytes / 1048576).toFixed(1)} MiB)`
      : `${m.id} (not compatible)`, m.id);
    opt.disabled = !m.compatible;
    opt.title = describeModel(m);
    els.model.add(opt);
  }
  const saved = stored(KEYS.model);
  const usable = (id) => data.models.some((m) => m.id === id && m.compatible);
  els.model.value = usable(saved) ? saved : (data.default || "");
  if (data.no_model && !usable(els.model.value)) showMessage(`No model: ${data.no_model}`, "no_model");
  modelChanged(false);
}

function modelChanged(save = true) {
  const m = state.models.find((x) => x.id === els.model.value);
  els.modelInfo.textContent = m ? describeModel(m) : "No model selected.";
  if (m && m.sequence_length) {
    els.maxTokens.max = m.sequence_length - 1;
    if (Number(els.maxTokens.value) >= m.sequence_length) els.maxTokens.value = m.sequence_length - 1;
  }
  if (save && m) store(KEYS.model, m.id);
  if (save) { cancel(); clearSuggestion(); hideMessage(); els.stats.textContent = ""; }
  if (typeof chatModelChanged === "function") chatModelChanged(m, save);  // chat.js
}

// -- generation -----------------------------------------------------------------------------
function cancel() {
  if (state.controller) state.controller.abort();
  state.controller = null;
  setBusy(false);
}

async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data: "))
        .map((l) => l.slice(6)).join("\n");
      if (data === "[DONE]") return;
      if (data) yield JSON.parse(data);
    }
  }
}

function onEvent(ev, run) {
  if (ev.error) { run.error = ev.error; return; }
  const p = ev.pocketlm || {};
  if (p.event === "start") {
    const cut = p.prompt_truncated ? " (cut to fit the model)" : "";
    els.sent.textContent = `Sent to the model (${p.prompt_tokens} tokens${cut}): “${p.prompt_used}”`;
    els.sent.dataset.prompt = p.prompt_used;
  } else if (p.event === "retry") {
    clearSuggestion();
    showMessage(`That suggestion had blocked language: trying again (attempt ${p.attempt} of ${p.max_attempts})…`, "retry", true);
  }
  const choice = (ev.choices || [])[0] || {};
  if (choice.text) { state.suggestion += choice.text; render(); }
  if (choice.finish_reason) { run.finished = true; finished(ev, choice.finish_reason, p); }
}

function finished(ev, reason, p) {
  if (reason === "content_filter") {
    state.suggestion = "No suggestion";
    els.suggestion.classList.add("none");
    showMessage("No suggestion: every attempt had language the profanity filter blocks. Edit the text or try again.", "no_suggestion", true);
  } else if (els.message.dataset.kind === "retry") {
    hideMessage();
  }
  const ttft = Math.round((p.time_to_first_token || 0) * 1000);
  const tps = (p.tokens_per_second || 0).toFixed(1);
  const n = ev.usage ? ev.usage.completion_tokens : 0;
  const tries = p.attempts > 1 ? ` · ${p.attempts} attempts` : "";
  els.stats.textContent = `first token ${ttft} ms · ${tps} tokens/s · ${n} tokens · ${ev.model}${tries}`;
  els.stats.dataset.model = ev.model;
  render();
}

async function generate() {
  cancel();
  clearSuggestion();
  hideMessage();
  if (!els.model.value) { showMessage("No model: pick one in the list, or start the server with a model.", "no_model"); return; }
  if (!els.story.value.trim()) { showMessage("Type the start of a story first.", "empty", true); return; }
  const ctrl = new AbortController();
  state.controller = ctrl;
  setBusy(true);
  els.stats.textContent = els.sent.textContent = "";
  delete els.sent.dataset.prompt;
  try {
    const resp = await fetch("/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(requestBody()), signal: ctrl.signal,
    });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({ error: { message: resp.statusText } }));
      if (resp.status >= 500) await reportFailure(err.error, resp.status, ctrl);
      else showError(err.error, resp.status);
      return;
    }
    const run = { finished: false, error: null };
    for await (const ev of sseEvents(resp)) onEvent(ev, run);
    if (run.error || !run.finished) await reportFailure(run.error, undefined, ctrl);
  } catch (e) {
    if (e.name !== "AbortError") await reportFailure(null, undefined, ctrl);
  } finally {
    if (state.controller === ctrl) { state.controller = null; setBusy(false); }
  }
}

// -- actions --------------------------------------------------------------------------------
function accept() {
  if (!state.suggestion || els.suggestion.classList.contains("none")) return;
  els.story.value += state.suggestion;
  saveStory();
  clearSuggestion();
  state.reroll = 0;
  els.story.focus();
  els.story.setSelectionRange(els.story.value.length, els.story.value.length);
}

async function copy() {
  const text = els.story.value;
  try {
    await navigator.clipboard.writeText(text);
  } catch (e) {  // no clipboard permission (plain http, some browsers): select and copy
    els.story.select();
    document.execCommand("copy");
  }
  showMessage("Copied the story to the clipboard.", "copied", true);
}

function clearAll() {
  cancel();
  els.story.value = "";
  saveStory();
  clearSuggestion();
  hideMessage();
  els.stats.textContent = els.sent.textContent = "";
  els.story.focus();
}

els.story.addEventListener("input", () => {
  // Typing replaces a suggestion: it was made for the old text.
  if (state.suggestion || state.controller) { cancel(); clearSuggestion(); }
  saveStory();
  render();
});
els.story.addEventListener("keydown", (e) => {
  if (e.key === "Tab" && !e.shiftKey && !els.accept.hidden) { e.preventDefault(); accept(); }
});
// Anywhere on the page: Ctrl+Enter (Cmd+Enter on a Mac) generates, Escape stops.
document.addEventListener("keydown", (e) => {
  if (document.body.dataset.mode === "chat") return;  // chat.js has its own keys
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !els.generate.disabled) {
    e.preventDefault();
    state.reroll = 0;
    generate();
  } else if (e.key === "Escape" && state.controller) {
    e.preventDefault();
    cancel();
  }
});
if (/Mac|iPhone|iPad/.test(navigator.platform)) els.generateKey.textContent = "⌘+Enter";
els.generate.addEventListener("click", () => { state.reroll = 0; generate(); });
els.again.addEventListener("click", () => { state.reroll += 1; generate(); });
els.stop.addEventListener("click", cancel);
els.accept.addEventListener("click", accept);
els.copy.addEventListener("click", copy);
els.clear.addEventListener("click", clearAll);
els.model.addEventListener("change", () => modelChanged(true));
els.unit.addEventListener("change", () => { setUnit(false); saveSettings(); });
for (const k of SETTINGS) {
  // "input" too: a value typed and then reloaded away (no "change" yet) is kept.
  for (const type of ["change", "input"]) {
    els[k].addEventListener(type, () => { windowLabel(); saveSettings(); });
  }
}

loadSettings();
loadStory();
render();
loadModels();
