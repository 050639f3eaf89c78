// pocketlm chat mode: a conversation with a chat model through POST /v1/chat/completions
// (stream: true). Shares app.js's helpers (els, sseEvents, showError, reportFailure, store).
// The whole conversation is sent each time: the server's worker reuses its cache for it.
"use strict";

const chatEls = {
  view: $("chat-view"), storyView: $("story-view"), modeStory: $("mode-story"),
  modeChat: $("mode-chat"), system: $("system"), messages: $("messages"),
  input: $("chat-input"), send: $("send"), stop: $("chat-stop"), reset: $("reset"),
  usage: $("chat-usage"),
};
const CHAT_KEYS = { conversation: "pocketlm.chat", mode: "pocketlm.mode" };
const chat = { messages: [], controller: null, used: null, model: null, dropped: 0 };

// -- mode -----------------------------------------------------------------------------------
function setMode(mode, save = true) {
  const isChat = mode === "chat";
  document.body.dataset.mode = mode;
  chatEls.view.hidden = !isChat;
  chatEls.storyView.hidden = isChat;
  chatEls.modeChat.setAttribute("aria-pressed", String(isChat));
  chatEls.modeStory.setAttribute("aria-pressed", String(!isChat));
  document.querySelector("h1 span").textContent = isChat ? "chat" : "story autocomplete";
  if (isChat) { cancel(); chatEls.input.focus({ preventScroll: true }); } else {
    chatCancel();
    els.story.focus({ preventScroll: true });
  }
  if (save) store(CHAT_KEYS.mode, JSON.stringify({ model: els.model.value, mode }));
  chatUsage();
}

// Called by app.js whenever the model changes (``save``: the user picked it). A model whose
// family has a chat template opens in chat mode, any other in story mode; a choice the user
// made for this same model is kept across reloads.
function chatModelChanged(m, save) {
  chat.model = m || null;
  let saved = null;
  try { saved = JSON.parse(stored(CHAT_KEYS.mode) || "null"); } catch (e) { /* reset */ }
  const auto = m && m.chat_template ? "chat" : "story";
  const mode = !save && saved && m && saved.model === m.id ? saved.mode : auto;
  if (save) { chatCancel(); }
  setMode(mode, save);
}

// -- conversation ---------------------------------------------------------------------------
function saveConversation() {
  store(CHAT_KEYS.conversation, JSON.stringify({ system: chatEls.system.value,
    messages: chat.messages, used: chat.used, dropped: chat.dropped }));
}

function loadConversation() {
  let data = {};
  try { data = JSON.parse(stored(CHAT_KEYS.conversation) || "{}") || {}; } catch (e) { /* reset */ }
  chatEls.system.value = typeof data.system === "string" ? data.system : "";
  chat.messages = Array.isArray(data.messages) ? data.messages.filter((x) => x &&
    (x.role === "user" || x.role === "assistant") && typeof x.content === "string") : [];
  chat.used = Number.isFinite(data.used) ? data.used : null;
  chat.dropped = Number.isFinite(data.dropped) ? data.dropped : 0;
  renderMessages();
}

function bubble(msg) {
  const li = document.createElement("li");
  li.className = msg.role;
  li.textContent = msg.content;
  return li;
}

function renderMessages() {
  chatEls.messages.replaceChildren(...chat.messages.map(bubble));
  chatEls.messages.scrollTop = chatEls.messages.scrollHeight;
  chatUsage();
}

// "N of M tokens used, about K more turns fit": N is the last answer's prompt plus reply
// (what the server counted), M the model's window; a turn is taken as the average size of
// the turns so far (a rough estimate: the next message may be longer or shorter).
function chatUsage() {
  const m = chat.model;
  const turns = chat.messages.filter((x) => x.role === "user").length - chat.dropped;
  if (!m || !m.sequence_length || chat.used === null || turns <= 0) {
    chatEls.usage.textContent = m && m.sequence_length
      ? `Window: ${m.sequence_length} tokens.` : "";
    return;
  }
  const window = m.sequence_length;
  // The reply's last token is sampled but never fed back: the count can pass the window by one.
  const used = Math.min(chat.used, window);
  const perTurn = Math.max(1, used / turns);
  const more = Math.max(0, Math.floor((window - used) / perTurn));
  // The model sees the turns that fit: the oldest are left out, whole, when the window is full.
  const left = chat.dropped > 0 ? ` The model no longer sees the ${chat.dropped} oldest ` +
    `turn${chat.dropped === 1 ? "" : "s"}.` : "";
  chatEls.usage.textContent = `${used} of ${window} tokens used, about ${more} more ` +
    `turn${more === 1 ? "" : "s"} fit` + (more === 0
      ? " (older turns are then left out, whole, to make room)." : ".") + left;
}

function setChatBusy(busy) {
  chatEls.send.disabled = busy;
  chatEls.send.classList.toggle("busy", busy);
  chatEls.send.setAttribute("aria-busy", String(busy));
  chatEls.send.querySelector(".label").textContent = busy ? "Replying…" : "Send";
  chatEls.stop.hidden = !busy;
  if (document.body.dataset.mode === "chat") chatEls.input.focus({ preventScroll: true });
}

function chatCancel() {
  if (chat.controller) chat.controller.abort();
  chat.controller = null;
  setChatBusy(false);
}

function chatBody() {
  const messages = [];
  const system = chatEls.system.value.trim();
  if (system) messages.push({ role: "system", content: system });
  // A reply stopped before any text (or cut) leaves an empty assistant turn: not sent.
  for (const x of chat.messages) if (x.content || x.role === "user") messages.push(x);
  const body = {
    model: els.model.value, messages, stream: true,
    max_tokens: Math.max(1, Math.round(num(els.maxTokens, 30))),
    temperature: num(els.temperature, 0.8), top_k: Math.round(num(els.topK, 0)),
    top_p: num(els.topP, 1), profanity_filter: els.filter.checked,
  };
  if (els.seed.value.trim() !== "") body.seed = Math.round(num(els.seed, 0));
  return body;
}

async function send() {
  const text = chatEls.input.value;
  chatEls.input.focus({ preventScroll: true });  // a click on Send leaves it in the input
  if (chat.controller) return;
  hideMessage();
  if (!els.model.value) { showMessage("No model: pick one in the list, or start the server with a model.", "no_model"); return; }
  if (!text.trim()) { showMessage("Type a message first.", "empty", true); return; }
  // Two user turns in a row are not a valid conversation: a reply that failed is replaced.
  const last = chat.messages[chat.messages.length - 1];
  if (last && last.role === "user") chat.messages.pop();
  chat.messages.push({ role: "user", content: text });
  const body = chatBody();
  const reply = { role: "assistant", content: "" };
  chat.messages.push(reply);
  chatEls.input.value = "";
  renderMessages();
  const li = chatEls.messages.lastElementChild;
  const ctrl = new AbortController();
  chat.controller = ctrl;
  setChatBusy(true);
  const run = { finished: false, error: null };
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body), signal: ctrl.signal,
    });
    if (!resp.ok) {
      const err = await resp.json().catch(() => ({ error: { message: resp.statusText } }));
      unsend(text);
      if (resp.status >= 500) await reportFailure(err.error, resp.status, state.controller);
      else showError(err.error, resp.status);
      return;
    }
    for await (const ev of sseEvents(resp)) {
      if (ev.error) { run.error = ev.error; break; }
      const choice = (ev.choices || [])[0] || {};
      const piece = choice.delta && choice.delta.content;
      if (piece) {
        reply.content += piece;
        li.textContent = reply.content;
        chatEls.messages.scrollTop = chatEls.messages.scrollHeight;
      }
      if (choice.finish_reason) {
        run.finished = true;
        const p = ev.pocketlm || {};
        if (Number.isFinite(p.prompt_tokens)) chat.used = p.prompt_tokens + (p.completion_tokens || 0);
        chat.dropped = p.dropped_turns || 0;
        if (choice.finish_reason === "content_filter") {
          showMessage("No reply: every attempt had language the profanity filter blocks. " +
            "Rephrase, or switch the filter off in Settings.", "no_suggestion", true);
        }
      }
    }
    if (run.error && !reply.content) unsend(text);  // refused before any reply (too long)
    if (run.error || !run.finished) await reportFailure(run.error, undefined, state.controller);
  } catch (e) {
    if (e.name === "AbortError") li.classList.add("stopped");
    else await reportFailure(null, undefined, state.controller);
  } finally {
    saveConversation();
    chatUsage();
    if (chat.controller === ctrl) { chat.controller = null; setChatBusy(false); }
  }
}

// Refused (the filter, a bad setting, too long for the window): the message goes back to the
// input, to edit and send again, and the conversation is as it was.
function unsend(text) {
  chat.messages.splice(-2, 2);
  chatEls.input.value = text;
  renderMessages();
}

function resetChat() {
  chatCancel();
  chat.messages = [];
  chat.used = null;
  chat.dropped = 0;
  saveConversation();
  renderMessages();
  hideMessage();
  chatEls.input.focus();
}

chatEls.modeStory.addEventListener("click", () => setMode("story"));
chatEls.modeChat.addEventListener("click", () => setMode("chat"));
chatEls.send.addEventListener("click", send);
chatEls.stop.addEventListener("click", () => { chatCancel(); });
chatEls.reset.addEventListener("click", resetChat);
chatEls.system.addEventListener("input", saveConversation);
chatEls.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
document.addEventListener("keydown", (e) => {
  if (document.body.dataset.mode === "chat" && e.key === "Escape" && chat.controller) {
    e.preventDefault();
    chatCancel();
  }
});
document.body.dataset.mode = "story";
loadConversation();
