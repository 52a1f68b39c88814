// The tfx playground: one page over the same HTTP API every client uses (no build step, no CDN).
"use strict";
const TASKS = ["generate", "fill-mask", "classify", "ner", "qa", "translate", "summarize", "embed", "rank"];
// Which tasks a model's loaded head serves (the server's /v1/models says "tasks" for each model).
const $ = (id) => document.getElementById(id);
const keyBox = $("key"), modelBox = $("model"), taskBox = $("task"), out = $("output"), errorBox = $("error");
let models = [];

keyBox.value = localStorage.getItem("tfx-key") || "";
keyBox.addEventListener("change", () => { localStorage.setItem("tfx-key", keyBox.value); loadModels(); });

function headers() {
  const h = { "Content-Type": "application/json" };
  if (keyBox.value) h["Authorization"] = "Bearer " + keyBox.value;
  return h;
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function clearOutput() {
  errorBox.hidden = true;
  errorBox.textContent = "";
  out.replaceChildren();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

async function errorOf(response) {
  try {
    const body = await response.json();
    return (body.error && (body.error.message || body.error)) || JSON.stringify(body);
  } catch (e) {
    return response.status + " " + response.statusText;
  }
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    if (!response.ok) { showError(await errorOf(response)); return; }
    models = (await response.json()).data || [];
  } catch (e) { showError("cannot reach the server: " + e); return; }
  modelBox.replaceChildren(...models.map((m) => el("option", { value: m.id }, m.id)));
  fillTasks();
}

function fillTasks() {
  const model = models.find((m) => m.id === modelBox.value);
  const tasks = model && model.tasks && model.tasks.length ? model.tasks : TASKS;
  const current = taskBox.value;
  taskBox.replaceChildren(...tasks.map((t) => el("option", { value: t }, t)));
  if (tasks.includes(current)) taskBox.value = current;
  showOptions();
}

function showOptions() {
  for (const node of document.querySelectorAll(".opt")) {
    node.hidden = !node.dataset.for.split(" ").includes(taskBox.value);
  }
}
modelBox.addEventListener("change", fillTasks);
taskBox.addEventListener("change", showOptions);

function lines(text) { return text.split("\n").map((s) => s.trim()).filter(Boolean); }
function num(id) { const v = parseInt($(id).value, 10); return Number.isFinite(v) ? v : undefined; }

function requestBody(task) {
  const body = { model: modelBox.value };
  const text = $("input").value;
  if (task === "rank") {
    body.query = text.trim();
    body.inputs = lines($("documents").value);
    return body;
  }
  if (task === "generate") { body.input = text; body.stream = true; body.max_new_tokens = num("max_new_tokens"); return body; }
  const inputs = lines(text);
  if (inputs.length === 1) body.input = inputs[0]; else body.inputs = inputs;
  if (task === "fill-mask" || task === "classify" || task === "qa") body.top_k = num("top_k");
  if (task === "translate") { body.from = $("from").value; body.to = $("to").value; }
  if (task === "translate" || task === "summarize") body.max_new_tokens = num("max_new_tokens");
  if (task === "classify" && $("labels").value.trim()) body.labels = $("labels").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (task === "qa") body.context = $("context").value;
  return body;
}

async function streamGeneration(body) {
  const box = el("div", { class: "stream", id: "stream" }, body.input);
  out.append(box);
  const response = await fetch("/v1/generate", { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) { showError(await errorOf(response)); return; }
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let pending = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = pending.indexOf("\n\n")) >= 0) {
      const event = pending.slice(0, cut); pending = pending.slice(cut + 2);
      const data = event.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (!data || data === "[DONE]") continue;
      const item = JSON.parse(data);
      if (item.text !== undefined) box.textContent += item.text;
      else if (item.error) showError(item.error.message || JSON.stringify(item.error));
      else if (item.result && item.result.error) showError(item.result.error);
      else if (item.result) box.dataset.done = "true";
    }
  }
}

function bars(rows, title) {
  const list = el("div", { class: "bars" });
  if (title) list.append(el("div", { class: "muted" }, title));
  for (const [label, score] of rows) {
    const fill = el("div", { class: "fill" });
    fill.style.width = Math.max(1, Math.round(score * 100)) + "%";
    list.append(el("div", { class: "bar" }, el("span", { class: "label" }, label), el("div", {}, fill), el("span", { class: "score" }, score.toFixed(4))));
  }
  return list;
}

function highlight(text, entities) {
  const box = el("div", { class: "stream ner" });
  let at = 0;
  for (const e of entities) {
    if (e.start < at) continue;
    box.append(text.slice(at, e.start));
    box.append(el("mark", { "data-label": e.label, title: e.score.toFixed(4) }, text.slice(e.start, e.end), el("span", { class: "tag" }, e.label)));
    at = e.end;
  }
  box.append(text.slice(at));
  return box;
}

function render(task, body, record) {
  if (record.error) { showError(record.error); return; }
  const input = record.input;
  if (task === "fill-mask") {
    (record.predictions || []).forEach((preds, i) => out.append(bars(preds.map((c) => [c.token, c.score]), "mask " + (i + 1) + " in: " + input)));
  } else if (task === "classify") {
    out.append(bars((record.labels || []).map((c) => [c.label, c.score]), input));
  } else if (task === "ner") {
    out.append(highlight(input, record.entities || []));
  } else if (task === "translate" || task === "summarize") {
    out.append(el("div", { class: "side" }, el("div", { class: "source" }, input), el("div", { class: "target" }, record.output)));
  } else if (task === "qa") {
    out.append(el("div", { class: "stream answer" }, record.output || "(no answer)"));
    if (record.answers) out.append(bars(record.answers.map((a) => [a.answer, a.score])));
  } else if (task === "embed") {
    const v = record.embedding || [];
    out.append(el("div", { class: "stream" }, input + "\n" + v.length + " dimensions: [" + v.slice(0, 8).map((x) => x.toFixed(4)).join(", ") + (v.length > 8 ? ", ..." : "") + "]"));
  } else {
    out.append(el("div", { class: "stream" }, record.output));
  }
}

$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  clearOutput();
  const task = taskBox.value, body = requestBody(task);
  const button = $("run");
  button.disabled = true;
  try {
    if (task === "generate") { await streamGeneration(body); return; }
    const response = await fetch("/v1/" + task, { method: "POST", headers: headers(), body: JSON.stringify(body) });
    if (!response.ok) { showError(await errorOf(response)); return; }
    const results = (await response.json()).results || [];
    if (task === "rank") {
      const ranked = results.filter((r) => !r.error).sort((a, b) => b.score - a.score);
      out.append(el("ol", { class: "ranked" }, ...ranked.map((r) => el("li", {}, el("span", { class: "score" }, r.score.toFixed(4)), " ", r.input))));
      results.filter((r) => r.error).forEach((r) => showError(r.error));
      return;
    }
    for (const record of results) render(task, body, record);
  } catch (e) {
    showError("request failed: " + e);
  } finally {
    button.disabled = false;
  }
});

loadModels();
