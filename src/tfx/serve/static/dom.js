// DOM helpers. Model output only ever becomes text nodes or attribute values: nothing here parses HTML.

/** An element: attributes by name (false/null/undefined are left out), children as nodes or strings (text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === false || value === null || value === undefined) continue;
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
export const score = (x) => (typeof x === "number" ? x.toFixed(3) : "");

/** The statistics line of an answer: tokens, time, speed. */
export function stats({ ms, tokens, extra = [] }) {
  const parts = [];
  if (tokens) parts.push(plural(tokens, "token"));
  if (ms !== undefined) parts.push(ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`);
  if (tokens && ms > 0) parts.push(`${(tokens / (ms / 1000)).toFixed(1)} tok/s`);
  return el("span", { class: "stats" }, [...parts, ...extra].join(" · "));
}

async function writeClipboard(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = el("textarea", { class: "offscreen", readonly: true });
  area.value = text;
  document.body.append(area);
  area.select();
  document.execCommand("copy"); // plain http to another host: no Clipboard API
  area.remove();
}

/** A copy button for the text that `text()` gives when clicked. */
export function copyButton(text, label = "Copy") {
  const button = el("button", { type: "button", class: "ghost small copy", title: "Copy to the clipboard" }, label);
  button.addEventListener("click", async () => {
    try {
      await writeClipboard(typeof text === "function" ? text() : text);
      button.textContent = "Copied";
    } catch (e) {
      button.textContent = "Copy failed";
    }
    button.classList.add("done");
    setTimeout(() => { button.textContent = label; button.classList.remove("done"); }, 1500);
  });
  return button;
}

/** Labelled score bars, as the Hub's widgets draw them (width: the score, from 0 to 1). */
export function bars(rows) {
  const list = el("div", { class: "bars" });
  rows.forEach(({ label, value, text }, i) => {
    const fill = el("span", { class: "fill" });
    fill.style.setProperty("--w", Math.max(0.5, Math.min(1, Math.max(0, value)) * 100).toFixed(1) + "%");
    list.append(el("div", { class: "bar" + (i === 0 ? " best" : "") },
      el("span", { class: "label", title: label }, label),
      el("span", { class: "track" }, fill),
      el("span", { class: "value" }, text === undefined ? score(value) : text)));
  });
  return list;
}

/** A result card: a head (title, stats, actions) and a body. */
export function card(title, body, { stats: line, actions = [], className = "" } = {}) {
  const head = el("div", { class: "result-head" }, el("h3", {}, title), el("span", { class: "spacer" }), line, ...actions);
  return el("article", { class: "card result " + className }, head, el("div", { class: "result-body" }, body));
}

/** The text of a `text` with the spans [start, end) wrapped in <mark> elements made by `mark(span, text)`. */
export function highlighted(text, spans, mark) {
  const nodes = [];
  let at = 0;
  for (const span of [...spans].sort((a, b) => a.start - b.start)) {
    if (typeof span.start !== "number" || typeof span.end !== "number" || span.start < at || span.end <= span.start) continue;
    nodes.push(text.slice(at, span.start), mark(span, text.slice(span.start, span.end)));
    at = span.end;
  }
  nodes.push(text.slice(at));
  return nodes.filter((n) => n !== "");
}
