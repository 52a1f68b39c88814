// The nine task views: each task's fields, the request body they make (src/tfx/serve/schemas.py) and the
// view of its answer. Model output is set as text only (dom.el appends strings as text nodes).
import { ApiError, call, events } from "./api.js";
import { bars, el, highlighted, plural, score } from "./dom.js";

const lines = (text) => text.split("\n").map((s) => s.trim()).filter(Boolean);
const oneOrMany = (items) => (items.length === 1 ? { input: items[0] } : { inputs: items });
const need = (ok, message) => { if (!ok) throw new ApiError(0, message, "client"); };
const set = (body, name, value) => { if (value !== undefined && value !== "" && value !== false) body[name] = value; return body; };

/** Records that failed are shown where they are; when every record failed, that is the request's error. */
function records(data) {
  const results = data.results || [];
  const failed = results.filter((r) => r.error);
  if (results.length && failed.length === results.length) {
    throw new ApiError(400, failed.map((r) => (results.length > 1 ? r.input + ": " : "") + r.error).join("\n"), "invalid_input");
  }
  return results;
}

const failedRecord = (r) => el("div", { class: "record failed" }, el("p", { class: "record-input" }, String(r.input)), el("p", { class: "record-error" }, r.error));

function fillMask(data) {
  const out = [], copy = [];
  for (const r of records(data)) {
    if (r.error) { out.push(failedRecord(r)); continue; }
    const parts = String(r.input).split(/(\[MASK\]|<mask>)/);
    let m = 0;
    const sentence = el("p", { class: "sentence" }, parts.map((part) => {
      if (part !== "[MASK]" && part !== "<mask>") return part;
      const best = (r.predictions[m++] || [])[0];
      return el("mark", { class: "filled", title: best ? "score " + score(best.score) : "" }, best ? best.token.trim() : part);
    }));
    const masks = r.predictions.map((preds, i) => el("div", { class: "mask" },
      r.predictions.length > 1 ? el("p", { class: "caption" }, "Mask " + (i + 1)) : null,
      bars(preds.map((c) => ({ label: c.token, value: c.score })))));
    out.push(el("div", { class: "record" }, sentence, masks));
    copy.push(r.output);
  }
  return { title: "Predictions", body: out, copy: copy.join("\n") };
}

function classify(data) {
  const out = [], copy = [];
  for (const r of records(data)) {
    if (r.error) { out.push(failedRecord(r)); continue; }
    out.push(el("div", { class: "record" }, el("p", { class: "record-input" }, r.input), bars(r.labels.map((c) => ({ label: c.label, value: c.score })))));
    copy.push(r.input + "\t" + r.labels.map((c) => c.label + "\t" + score(c.score)).join("\t"));
  }
  return { title: "Labels", body: out, copy: copy.join("\n") };
}

const KINDS = { PER: "per", LOC: "loc", ORG: "org", MISC: "misc" };
const kindOf = (label) => KINDS[String(label).replace(/^[BIES]-/, "").toUpperCase()] || "other";

function ner(data) {
  const out = [], copy = [], seen = new Map();
  for (const r of records(data)) {
    if (r.error) { out.push(failedRecord(r)); continue; }
    const text = String(r.input);
    out.push(el("p", { class: "ner-text" }, highlighted(text, r.entities, (e, word) => {
      seen.set(e.label, kindOf(e.label));
      return el("mark", { class: "ent ent-" + kindOf(e.label), title: `${e.label} · ${score(e.score)}` }, word, el("span", { class: "tag" }, e.label));
    })));
    if (!r.entities.length) out.push(el("p", { class: "muted" }, "No entities found."));
    copy.push(r.entities.map((e) => `${e.word}\t${e.label}\t${score(e.score)}`).join("\n"));
  }
  if (seen.size) out.unshift(el("div", { class: "legend" }, [...seen].map(([label, kind]) => el("span", { class: "chip ent-" + kind }, label))));
  return { title: "Entities", body: out, copy: copy.filter(Boolean).join("\n") };
}

function qa(data, values) {
  const out = [], copy = [];
  for (const r of records(data)) {
    if (r.error) { out.push(failedRecord(r)); continue; }
    const answered = Boolean(r.output);
    out.push(el("div", { class: "answer" + (answered ? "" : " none") },
      el("span", { class: "caption" }, "Answer"),
      el("p", { class: "answer-text" }, answered ? r.output : "The context does not answer this question."),
      answered ? el("span", { class: "muted" }, "score " + score(r.score)) : null));
    const spans = answered ? [{ start: r.start, end: r.end }] : [];
    out.push(el("p", { class: "context" }, highlighted(values.context, spans, (s, text) => el("mark", { class: "answer-span" }, text))));
    const others = (r.answers || []).slice(1);
    if (others.length) out.push(el("p", { class: "caption" }, "Other candidates"), bars(others.map((a) => ({ label: a.answer, value: a.score }))));
    copy.push(r.output);
  }
  return { title: "Answer", body: out, copy: copy.join("\n") };
}

/** Source and output side by side, one row per input. */
function sideBySide(left, right) {
  return (data) => {
    const rows = [el("div", { class: "side-head" }, el("span", {}, left), el("span", {}, right))];
    const copy = [];
    let tokens = 0;
    for (const r of records(data)) {
      if (r.error) { rows.push(failedRecord(r)); continue; }
      rows.push(el("div", { class: "side-row" }, el("p", { class: "source" }, r.input), el("p", { class: "target" }, r.output)));
      copy.push(r.output);
      tokens += r.generated_tokens || 0;
      if (r.chunks) rows.push(el("p", { class: "muted" }, `The input was longer than the model reads: summarised in ${r.chunks} parts.`));
    }
    return { title: right, body: [el("div", { class: "side" }, rows)], copy: copy.join("\n"), tokens };
  };
}

function cosine(a, b) {
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) { dot += a[i] * b[i]; na += a[i] * a[i]; nb += b[i] * b[i]; }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function embed(data) {
  const rows = records(data).filter((r) => !r.error);
  const vectors = rows.map((r) => r.embedding);
  const dims = vectors.length ? vectors[0].length : 0;
  const out = [el("p", { class: "muted" }, `${plural(rows.length, "text")} · ${dims} dimensions · cosine similarity`)];
  const head = el("tr", {}, el("th", {}, ""), rows.map((r, j) => el("th", { scope: "col", title: r.input }, String(j + 1))));
  const body = rows.map((r, i) => el("tr", {},
    el("th", { scope: "row", title: r.input }, el("span", { class: "n" }, String(i + 1)), el("span", { class: "t" }, r.input)),
    vectors.map((v, j) => {
      const sim = cosine(vectors[i], v);
      const cell = el("td", { class: "sim" + (sim > 0.55 ? " hot" : ""), "data-i": i, "data-j": j, title: `${i + 1} · ${j + 1}: ${sim.toFixed(4)}` }, sim.toFixed(2));
      cell.style.setProperty("--v", Math.max(0, sim).toFixed(3));
      return cell;
    })));
  out.push(el("div", { class: "matrix-wrap" }, el("table", { class: "matrix" }, el("thead", {}, head), el("tbody", {}, body))));
  if (rows.length === 1) out.push(el("p", { class: "muted" }, "Enter two lines or more to compare them."));
  for (const r of records(data)) if (r.error) out.push(failedRecord(r));
  return { title: "Similarity", body: out, copy: JSON.stringify(rows.map((r) => ({ input: r.input, embedding: r.embedding }))) };
}

function rank(data) {
  const all = records(data);
  const ranked = all.map((r, index) => ({ ...r, index })).filter((r) => !r.error).sort((a, b) => b.score - a.score);
  const list = el("ol", { class: "ranked" }, ranked.map((r) => el("li", {},
    el("p", { class: "doc" }, r.input),
    bars([{ label: "#" + (r.index + 1), value: r.score }]))));
  return { title: "Ranked", body: [list, ...all.filter((r) => r.error).map(failedRecord)], copy: ranked.map((r) => `${score(r.score)}\t${r.input}`).join("\n") };
}

/** generate streams: the prompt, then the continuation as it is made; the result carries the token count. */
async function streamGenerate({ body, signal, show }) {
  const prompt = body.input;
  const completion = el("span", { class: "completion" });
  const text = el("p", { class: "generated", id: "stream" }, el("span", { class: "prompt" }, prompt), completion);
  const view = show({ title: "Output", body: [text], copy: () => prompt + completion.textContent, streaming: true });
  const response = await call("/v1/generate", { body, signal });
  for await (const item of events(response)) {
    if (item.text !== undefined) completion.textContent += item.text;
    else if (item.result && item.result.error) throw new ApiError(400, item.result.error, "invalid_input");
    else if (item.result) {
      const output = String(item.result.output ?? "");
      if (output.startsWith(prompt)) completion.textContent = output.slice(prompt.length);
      text.dataset.done = "true";
      view.finish({ tokens: item.result.generated_tokens });
    }
  }
}

const num = (name, label, extra = {}) => ({ name, label, kind: "number", min: 1, narrow: true, ...extra });

export const GROUPS = ["Generate", "Understand", "Rewrite", "Search"];

export const TASKS = [
  {
    id: "generate", title: "Generate", group: "Generate", blurb: "Continue a prompt, token by token.",
    fields: [
      { name: "input", label: "Prompt", kind: "textarea", rows: 6, value: "Once upon a time" },
      num("max_new_tokens", "Max new tokens", { value: "48" }),
      num("temperature", "Temperature", { min: 0, max: 2, step: 0.1, placeholder: "model's" }),
    ],
    body: (v) => {
      need(v.input.trim(), "Write a prompt first.");
      const body = set({ input: v.input, stream: true }, "max_new_tokens", v.max_new_tokens);
      if (v.temperature !== undefined) Object.assign(body, v.temperature > 0 ? { do_sample: true, temperature: v.temperature } : { do_sample: false });
      return body;
    },
    stream: streamGenerate,
  },
  {
    id: "fill-mask", title: "Fill mask", group: "Understand", blurb: "The likeliest words for a gap: [MASK] for BERT models, <mask> for RoBERTa.",
    fields: [
      { name: "input", label: "Text, one sentence per line", kind: "textarea", rows: 4, value: "Paris is the [MASK] of France." },
      num("top_k", "Candidates", { value: "5" }),
    ],
    body: (v) => { const items = lines(v.input); need(items.length, "Write a sentence with a [MASK] in it."); return set(oneOrMany(items), "top_k", v.top_k); },
    render: fillMask,
  },
  {
    id: "classify", title: "Classify", group: "Understand", blurb: "Labels and their scores; give candidate labels for zero-shot classification.",
    fields: [
      { name: "input", label: "Texts, one per line", kind: "textarea", rows: 4, value: "I loved every minute of it.\nThe food was cold and the staff were rude." },
      { name: "labels", label: "Candidate labels (zero-shot)", kind: "text", placeholder: "sports, politics, cooking (empty: the model's own)" },
      num("top_k", "Top k", { placeholder: "all" }),
      { name: "multi_label", label: "Several labels may hold", kind: "checkbox" },
    ],
    body: (v) => {
      const items = lines(v.input);
      need(items.length, "Write a text to classify.");
      const labels = v.labels.split(",").map((s) => s.trim()).filter(Boolean);
      const body = set(set(oneOrMany(items), "top_k", v.top_k), "labels", labels.length ? labels : undefined);
      return set(body, "multi_label", v.multi_label);
    },
    render: classify,
  },
  {
    id: "ner", title: "Entities", group: "Understand", blurb: "Named entities (people, places, organisations) marked in the text.",
    fields: [{ name: "input", label: "Texts, one per line", kind: "textarea", rows: 4, value: "Angela Merkel visited Paris last week." }],
    body: (v) => { const items = lines(v.input); need(items.length, "Write a text first."); return oneOrMany(items); },
    render: ner,
  },
  {
    id: "qa", title: "Question answering", group: "Understand", blurb: "The span of the context that answers the question.",
    fields: [
      { name: "input", label: "Question", kind: "text", value: "Who wrote the report?" },
      { name: "context", label: "Context", kind: "textarea", rows: 5, value: "The report about the floods was written by Alice Smith last year." },
      num("top_k", "Candidates", { value: "3" }),
    ],
    body: (v) => {
      need(v.input.trim(), "Ask a question.");
      need(v.context.trim(), "Give the context the answer is in.");
      return set({ input: v.input.trim(), context: v.context }, "top_k", v.top_k);
    },
    render: qa,
  },
  {
    id: "translate", title: "Translate", group: "Rewrite", blurb: "Sentence by sentence; language codes as the model names them (en, de, fr ...).",
    fields: [
      { name: "input", label: "Text, one sentence per line", kind: "textarea", rows: 5, value: "The house is small." },
      { name: "from", label: "From", kind: "text", value: "en", narrow: true },
      { name: "to", label: "To", kind: "text", value: "de", narrow: true },
    ],
    body: (v) => {
      const items = lines(v.input);
      need(items.length, "Write a text to translate.");
      need(v.to.trim(), "Say which language to translate to (a code such as de or fr).");
      return set(set(oneOrMany(items), "from", v.from.trim()), "to", v.to.trim());
    },
    render: (data, v) => sideBySide(`Source (${v.from || "en"})`, `Translation (${v.to})`)(data),
  },
  {
    id: "summarize", title: "Summarize", group: "Rewrite", blurb: "A short summary of a longer text; one past the model's context is summarised in parts.",
    fields: [
      { name: "input", label: "Text", kind: "textarea", rows: 9, value: "The city council met on Tuesday evening to discuss the new park project. After a long debate, the members voted to build a large green park near the river, with playgrounds for children, paths for cyclists and a small lake. Construction will start next spring and should be finished within two years.", placeholder: "Paste an article" },
      num("max_new_tokens", "Max new tokens", { placeholder: "model's" }),
      num("min_new_tokens", "Min new tokens", { min: 0, placeholder: "model's" }),
    ],
    body: (v) => { need(v.input.trim(), "Paste a text to summarise."); return set(set({ input: v.input.trim() }, "max_new_tokens", v.max_new_tokens), "min_new_tokens", v.min_new_tokens); },
    render: sideBySide("Text", "Summary"),
  },
  {
    id: "embed", title: "Embed", group: "Search", blurb: "Sentence embeddings, compared: the cosine similarity of every pair of lines.",
    fields: [
      { name: "input", label: "Texts, one per line", kind: "textarea", rows: 5, value: "how do I reset my password\nTo reset your password, open the settings page and choose reset password.\nOur shop is open from nine to five on weekdays." },
      num("dimensions", "Dimensions", { placeholder: "all" }),
    ],
    body: (v) => { const items = lines(v.input); need(items.length, "Write a line or more."); return set({ inputs: items }, "dimensions", v.dimensions); },
    render: embed,
  },
  {
    id: "rank", title: "Rank", group: "Search", blurb: "Documents ordered by their relevance to a query.",
    fields: [
      { name: "query", label: "Query", kind: "text", value: "how do I reset my password" },
      { name: "input", label: "Documents, one per line", kind: "textarea", rows: 5, value: "Our shop is open from nine to five on weekdays.\nTo reset your password, open the settings page and choose reset password.\nOur mobile app is available for phones and tablets." },
      { name: "cross_encoder", label: "Cross-encoder (scores each pair)", kind: "checkbox" },
    ],
    body: (v) => {
      const items = lines(v.input);
      need(v.query.trim(), "Write a query.");
      need(items.length, "Give the documents to rank, one per line.");
      return set({ query: v.query.trim(), inputs: items }, "cross_encoder", v.cross_encoder);
    },
    render: rank,
    onModel: (form, model) => { form.elements.cross_encoder.checked = /cross-encoder|rerank/i.test(model); },
  },
];
