// The chat view: a conversation with a model that has a chat template, over /v1/chat/completions streamed,
// kept for this tab (sessionStorage). Regenerate asks again for the last reply; Stop aborts the request.
import { ApiError, call, events } from "./api.js";
import { copyButton, el, stats } from "./dom.js";

const STORE = "tfx-chat";

function load() {
  try {
    const saved = JSON.parse(sessionStorage.getItem(STORE) || "[]");
    return Array.isArray(saved) ? saved.filter((m) => m && typeof m.content === "string" && (m.role === "user" || m.role === "assistant")) : [];
  } catch (e) {
    return [];
  }
}

/** hooks: model() -> the model field's value; fail(error); ok(model) after an answer; busy(bool). */
export function chatView(root, hooks) {
  const list = root.querySelector(".messages");
  const empty = list.querySelector(".empty");
  const form = root.querySelector(".composer");
  const box = form.elements.input;
  const stopButton = root.querySelector(".stop");
  const field = (name) => root.querySelector(`[name=${name}]`);
  let history = load();
  let controller = null;

  const save = () => sessionStorage.setItem(STORE, JSON.stringify(history));
  const scroll = () => { list.scrollTop = list.scrollHeight; };

  function bubble(message, index) {
    const last = index === history.length - 1;
    const node = el("div", { class: "msg " + message.role },
      el("div", { class: "msg-role" }, message.role === "user" ? "You" : "Assistant"),
      el("div", { class: "msg-body" }, message.content));
    if (message.role === "user" && last && controller === null) { // no answer came (stopped): ask again
      const retry = el("button", { type: "button", class: "ghost small regenerate" }, "Retry");
      retry.addEventListener("click", () => again());
      node.append(el("div", { class: "msg-foot" }, retry));
    }
    if (message.role === "assistant") {
      const regenerate = last ? el("button", { type: "button", class: "ghost small regenerate", disabled: controller !== null }, "Regenerate") : null;
      if (regenerate) regenerate.addEventListener("click", () => again());
      node.append(el("div", { class: "msg-foot" },
        message.stats ? stats(message.stats) : null,
        message.note ? el("span", { class: "note" }, message.note) : null,
        el("span", { class: "spacer" }),
        copyButton(() => message.content), regenerate));
    }
    return node;
  }

  function draw() {
    list.replaceChildren(...(history.length ? history.map(bubble) : [empty]));
    scroll();
  }

  function settings() {
    const body = {};
    const maxTokens = parseInt(field("max_tokens").value, 10);
    const temperature = parseFloat(field("temperature").value);
    if (Number.isFinite(maxTokens)) body.max_tokens = maxTokens;
    if (Number.isFinite(temperature)) body.temperature = temperature;
    return body;
  }

  function busy(on) {
    form.querySelector(".send").disabled = on;
    stopButton.hidden = !on;
    root.classList.toggle("busy", on);
    for (const b of list.querySelectorAll(".regenerate")) b.disabled = on;
    hooks.busy(on);
  }

  /** Ask for the next assistant message; false if the request failed (the caller puts things back). */
  async function reply() {
    const model = hooks.model();
    if (!model) { hooks.fail(new ApiError(0, "Choose a chat model first: a model whose tokenizer has a chat template.")); return false; }
    const system = field("system").value.trim();
    const messages = [...(system ? [{ role: "system", content: system }] : []), ...history.map(({ role, content }) => ({ role, content }))];
    const body = { model, messages, stream: true, stream_options: { include_usage: true }, ...settings() };
    const message = { role: "assistant", content: "" };
    history.push(message);
    controller = new AbortController();
    draw();
    busy(true);
    const node = list.lastElementChild;
    const text = node.querySelector(".msg-body");
    node.classList.add("streaming");
    const started = performance.now();
    let usage = null, finish = null, ok = true;
    try {
      const response = await call("/v1/chat/completions", { body, signal: controller.signal });
      for await (const chunk of events(response)) {
        if (chunk.usage) usage = chunk.usage;
        const choice = (chunk.choices || [])[0];
        if (!choice) continue;
        const piece = choice.delta ? choice.delta.content : choice.message && choice.message.content;
        if (piece) { message.content += piece; text.textContent = message.content; scroll(); }
        if (choice.finish_reason) finish = choice.finish_reason;
      }
      message.stats = { ms: performance.now() - started, tokens: usage ? usage.completion_tokens : undefined };
      if (finish === "length") message.note = "stopped at the token limit";
      hooks.ok(model);
    } catch (e) {
      if (e.name === "AbortError") {
        message.stats = { ms: performance.now() - started };
        message.note = "stopped";
        if (!message.content) history.pop();
      } else {
        history.pop();
        ok = false;
        hooks.fail(e);
      }
    } finally {
      controller = null;
      busy(false);
      save();
      draw();
    }
    return ok;
  }

  async function sendMessage() {
    const content = box.value;
    if (!content.trim() || controller) return;
    history.push({ role: "user", content });
    box.value = "";
    if (!(await reply())) { // the message goes back to the composer, to be sent again
      history.pop();
      box.value = content;
      save();
      draw();
    }
    box.focus();
  }

  async function again() {
    if (controller || !history.length) return;
    const last = history[history.length - 1];
    if (last.role === "assistant") history.pop();
    if (!(await reply()) && last.role === "assistant") { history.push(last); save(); draw(); }
  }

  form.addEventListener("submit", (event) => { event.preventDefault(); sendMessage(); });
  box.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); form.requestSubmit(); }
  });
  stopButton.addEventListener("click", () => controller && controller.abort());
  root.querySelector(".new-chat").addEventListener("click", () => {
    if (controller) controller.abort();
    history = [];
    save();
    draw();
    box.focus();
  });
  draw();
  return { stop: () => controller && controller.abort(), busy: () => controller !== null };
}
