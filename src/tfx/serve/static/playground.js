// The tfx playground: one page over the same HTTP API every client uses (no build step, no CDN). This file
// wires the page: the API key gate, the model lists, the navigation, the task forms and their runs.
import { ApiError, apiKey, json } from "./api.js";
import { chatView } from "./chat.js";
import { card, copyButton, el, stats } from "./dom.js";
import { GROUPS, TASKS } from "./tasks.js";

const $ = (selector, root = document) => root.querySelector(selector);
const MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
const RECENT = "tfx-recent-models";
const state = { models: [], keyed: false, running: new Map(), chat: null };

// --- errors ---------------------------------------------------------------------------------------------

function showError(box, error) {
  box.replaceChildren(el("span", { class: "error-text" }, error.message), error.hint ? el("span", { class: "error-hint" }, error.hint) : "");
  box.hidden = false;
}

function clearError(box) {
  box.hidden = true;
  box.replaceChildren();
}

/** A refused key sends the person back to the key form; any other error is shown where it happened. */
function failed(box, error) {
  if (error.status === 401) { showGate(error); return; }
  showError(box, error);
}

// --- the key gate and the server ------------------------------------------------------------------------

function showGate(error) {
  $("#workspace").hidden = true;
  $("#gate").hidden = false;
  $("#key-cancel").hidden = !(state.keyed && !error);
  $("#key-forget").hidden = !apiKey.get();
  if (error) showError($("#key-error"), apiKey.get() ? new ApiError(401, "The server refused this key: " + error.message) : error);
  else clearError($("#key-error"));
  $("#key").value = apiKey.get();
  $("#key").focus();
}

async function connect() {
  let answer;
  try {
    answer = await json("/v1/models");
  } catch (error) {
    if (error.status === 401) showGate(apiKey.get() ? error : null);
    else showError($("#boot-error"), error);
    return;
  }
  clearError($("#boot-error"));
  clearError($("#key-error"));
  state.models = answer.data.data || [];
  state.keyed = Boolean(apiKey.get());
  $("#gate").hidden = true;
  $("#workspace").hidden = false;
  $("#key-button").hidden = !state.keyed;
  refreshModels();
  route();
  describeServer();
}

async function describeServer() {
  try {
    const { data } = await json("/health");
    const parts = [data.version ? "tfx " + data.version : "", data.device || "", `${state.models.length} model${state.models.length === 1 ? "" : "s"}`];
    $("#server").replaceChildren(el("span", { class: "dot", "aria-hidden": "true" }), parts.filter(Boolean).join(" · "));
  } catch (e) {
    $("#server").replaceChildren();
  }
}

$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("#key").value.trim();
  if (!value) { showError($("#key-error"), new ApiError(0, "Enter the key first.")); return; }
  apiKey.set(value);
  connect();
});
$("#key-cancel").addEventListener("click", () => { $("#gate").hidden = true; $("#workspace").hidden = false; });
$("#key-forget").addEventListener("click", () => { apiKey.set(""); state.keyed = false; showGate(null); });
$("#key-button").addEventListener("click", () => showGate(null));

// --- models ---------------------------------------------------------------------------------------------

const recent = () => { try { return JSON.parse(localStorage.getItem(RECENT) || "{}"); } catch (e) { return {}; } };
const looksLikeChat = (m) => (m.chat !== undefined ? m.chat : /chat|instruct|-it\b|assistant/i.test(m.id));

/** The models the datalist of a view offers: those the server has that serve its task, then those used before. */
function modelsFor(view) {
  const task = view === "chat" ? "generate" : view;
  const served = state.models.filter((m) => (m.tasks || []).includes(task));
  const ids = (view === "chat" ? [...served.filter(looksLikeChat), ...served] : served).map((m) => m.id);
  return [...new Set([...ids, ...(recent()[view] || [])])];
}

function remember(view, model) {
  if (!model) return;
  const all = recent();
  all[view] = [model, ...(all[view] || []).filter((m) => m !== model)].slice(0, 12);
  localStorage.setItem(RECENT, JSON.stringify(all));
  sessionStorage.setItem("tfx-model:" + view, model);
  if (!state.models.some((m) => m.id === model)) json("/v1/models").then(({ data }) => { state.models = data.data || []; refreshModels(); }).catch(() => {});
  else refreshModels();
}

function refreshModels() {
  for (const view of ["chat", ...TASKS.map((t) => t.id)]) {
    const ids = modelsFor(view);
    const list = document.getElementById("models-" + view) || document.body.appendChild(el("datalist", { id: "models-" + view }));
    list.replaceChildren(...ids.map((id) => el("option", { value: id })));
    const input = $(`#${view} [name=model]`);
    if (input && !input.value) {
      input.value = sessionStorage.getItem("tfx-model:" + view) || (view === "chat" ? modelsFor("chat").find((id) => looksLikeChat({ id })) : ids[0]) || "";
      input.dispatchEvent(new Event("change"));
    }
    const count = $(`.nav-item[data-view="${view}"] .count`);
    if (count) count.textContent = view === "chat" ? "" : String(state.models.filter((m) => (m.tasks || []).includes(view)).length || "");
  }
}

// --- navigation -----------------------------------------------------------------------------------------

function buildNav() {
  const nav = $("#nav");
  const item = (id, title) => el("a", { class: "nav-item", href: "#" + id, "data-view": id }, el("span", {}, title), el("span", { class: "count" }));
  for (const group of GROUPS) {
    const items = TASKS.filter((t) => t.group === group).map((t) => item(t.id, t.title));
    if (group === "Generate") items.unshift(item("chat", "Chat"));
    nav.append(el("div", { class: "nav-group" }, el("p", { class: "nav-title" }, group), items));
  }
}

function route() {
  const id = location.hash.slice(1);
  const view = document.getElementById(id) && document.getElementById(id).classList.contains("view") ? id : "chat";
  for (const node of document.querySelectorAll(".view")) node.hidden = node.id !== view;
  for (const link of document.querySelectorAll(".nav-item")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  const current = $(`.nav-item[data-view="${view}"]`);
  if (current) current.scrollIntoView({ block: "nearest", inline: "nearest" });
}
window.addEventListener("hashchange", route);

// --- task views -----------------------------------------------------------------------------------------

function fieldOf(spec, f) {
  const id = `${spec.id}-${f.name}`;
  const attrs = { id, name: f.name, placeholder: f.placeholder, spellcheck: f.kind === "textarea" || f.name === "input" ? undefined : "false" };
  if (f.kind === "checkbox") {
    const box = el("input", { ...attrs, type: "checkbox" });
    return el("label", { class: "check", for: id }, box, el("span", {}, f.label));
  }
  const input = f.kind === "textarea"
    ? el("textarea", { ...attrs, rows: f.rows || 3 })
    : el("input", { ...attrs, type: f.kind === "number" ? "number" : "text", min: f.min, max: f.max, step: f.step, autocomplete: "off" });
  input.value = f.value || "";
  return el("label", { class: "field" + (f.narrow ? " narrow" : "") + (f.kind === "textarea" ? " wide" : ""), for: id }, f.label, input);
}

function valuesOf(spec, form) {
  const values = {};
  for (const f of spec.fields) {
    const input = form.elements[f.name];
    if (f.kind === "checkbox") values[f.name] = input.checked;
    else if (f.kind === "number") { const v = parseFloat(input.value); values[f.name] = Number.isFinite(v) ? v : undefined; }
    else values[f.name] = input.value;
  }
  return values;
}

function buildTask(spec) {
  const model = el("input", { id: `${spec.id}-model`, name: "model", list: "models-" + spec.id, autocomplete: "off", spellcheck: "false", placeholder: "a Hub id in the server's cache (empty: the task's default)" });
  const run = el("button", { class: "primary run", type: "submit" }, el("span", { class: "run-label" }, "Run"), el("kbd", {}, MAC ? "⌘ Enter" : "Ctrl Enter"));
  const stop = el("button", { class: "stop", type: "button", hidden: true }, "Stop");
  const numbers = spec.fields.filter((f) => f.narrow || f.kind === "checkbox");
  const form = el("form", { class: "card task-form", novalidate: true },
    el("label", { class: "field model-field", for: model.id }, "Model", model),
    spec.fields.filter((f) => !numbers.includes(f)).map((f) => fieldOf(spec, f)),
    numbers.length ? el("div", { class: "row" }, numbers.map((f) => fieldOf(spec, f))) : null,
    el("div", { class: "actions" }, run, stop));
  const error = el("p", { class: "error", role: "alert", hidden: true });
  const results = el("div", { class: "results", "aria-live": "polite" }, el("div", { class: "placeholder" }, "The answer shows here."));
  const section = el("section", { id: spec.id, class: "view task-view", "data-view": spec.id, hidden: true },
    el("div", { class: "view-head" }, el("h1", {}, spec.title), el("p", { class: "muted" }, spec.blurb)),
    el("div", { class: "task-grid" }, form, el("div", { class: "output" }, error, results)));
  if (spec.onModel) model.addEventListener("change", () => spec.onModel(form, model.value));
  form.addEventListener("submit", (event) => { event.preventDefault(); runTask(spec, section); });
  stop.addEventListener("click", () => { const c = state.running.get(spec.id); if (c) c.abort(); });
  $("#views").append(section);
}

function setBusy(section, on) {
  const run = $(".run", section);
  run.disabled = on;
  $(".run-label", run).textContent = on ? "Running" : "Run";
  $(".stop", section).hidden = !on;
  section.classList.toggle("busy", on);
  $(".results", section).setAttribute("aria-busy", on ? "true" : "false");
}

async function runTask(spec, section) {
  if (state.running.has(spec.id)) return;
  const form = $("form", section), error = $(".error", section), results = $(".results", section);
  const model = form.elements.model.value.trim();
  const values = valuesOf(spec, form);
  let body;
  try {
    body = { ...(model ? { model } : {}), ...spec.body(values) };
  } catch (e) {
    showError(error, e);
    return;
  }
  const controller = new AbortController();
  state.running.set(spec.id, controller);
  setBusy(section, true);
  const started = performance.now();
  let shown = null;
  // A result card; its statistics are filled in when the answer is complete.
  const show = ({ title, body: nodes, copy, streaming }) => {
    const line = el("span", { class: "stats" }, streaming ? "streaming" : "");
    const node = card(title, nodes, { stats: line, actions: [copyButton(copy)], className: spec.id });
    results.replaceChildren(node);
    shown = { node, line };
    return { finish: ({ tokens, extra } = {}) => line.replaceWith(stats({ ms: performance.now() - started, tokens, extra })) };
  };
  results.replaceChildren(el("div", { class: "placeholder waiting" }, el("span", { class: "spinner", "aria-hidden": "true" }), "Waiting for the model"));
  try {
    if (spec.stream) await spec.stream({ body, signal: controller.signal, show });
    else {
      const { data } = await json("/v1/" + spec.id, { body, signal: controller.signal });
      const answer = spec.render(data, values);
      show(answer).finish({ tokens: answer.tokens, extra: [`${(data.results || []).length} input${(data.results || []).length === 1 ? "" : "s"}`] });
    }
    clearError(error);
    remember(spec.id, model);
  } catch (e) {
    if (e.name === "AbortError") {
      if (shown) shown.line.replaceWith(stats({ ms: performance.now() - started, extra: ["stopped"] }));
      else results.replaceChildren(el("div", { class: "placeholder" }, "Stopped."));
    } else {
      if (!shown || !shown.node.isConnected) results.replaceChildren();
      failed(error, e instanceof ApiError ? e : new ApiError(0, String(e.message || e)));
    }
  } finally {
    state.running.delete(spec.id);
    setBusy(section, false);
  }
}

// --- keys -----------------------------------------------------------------------------------------------

document.addEventListener("keydown", (event) => {
  const form = event.target.closest && event.target.closest("form.task-form");
  if (form && event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    form.requestSubmit();
  } else if (event.key === "Escape") {
    const view = document.querySelector(".view:not([hidden])");
    if (view && view.id === "chat") state.chat.stop();
    else if (view && state.running.has(view.id)) state.running.get(view.id).abort();
  }
});

// --- start ----------------------------------------------------------------------------------------------

buildNav();
TASKS.forEach(buildTask);
const chatRoot = $("#chat");
const chatError = $(".error", chatRoot);
state.chat = chatView(chatRoot, {
  model: () => $("[name=model]", chatRoot).value.trim(),
  fail: (e) => {
    const error = e instanceof ApiError ? e : new ApiError(0, String(e.message || e));
    if (error.code === "no_chat_template") error.hint = "Models without a chat template continue a prompt: try the Generate view.";
    failed(chatError, error);
  },
  ok: (model) => { clearError(chatError); remember("chat", model); },
  busy: () => {},
});
chatRoot.querySelector("[name=model]").addEventListener("change", () => clearError(chatError));
connect();
