// Talking to the server: the API key (kept for this tab only), requests, SSE streams and error bodies.
const KEY = "tfx-key";
localStorage.removeItem(KEY); // an older page kept the key for good; now it lasts as long as the tab

export const apiKey = {
  get: () => sessionStorage.getItem(KEY) || "",
  set: (value) => (value ? sessionStorage.setItem(KEY, value) : sessionStorage.removeItem(KEY)),
};

/** An answer that was not a success: the HTTP status, the server's message and its error code. */
export class ApiError extends Error {
  constructor(status, message, code = "", hint = "") {
    super(message);
    this.status = status;
    this.code = code;
    this.hint = hint;
  }
}

/** The message of an error body: OpenAI's {"error": {"message"}} (400 and the rest), a bare {"error": "..."},
 * or FastAPI's own 422 {"detail": [{"loc", "msg"}]}. */
export function errorFrom(status, body, fallback = "") {
  let message = "", code = "", hint = "";
  const error = body && typeof body === "object" ? body.error : undefined;
  if (typeof error === "string") message = error;
  else if (error && typeof error === "object") {
    message = typeof error.message === "string" ? error.message : JSON.stringify(error);
    code = error.code || "";
    hint = (error.tfx && error.tfx.hint) || "";
  } else if (body && typeof body === "object" && body.detail !== undefined) {
    const detail = body.detail;
    message = Array.isArray(detail)
      ? detail.map((d) => (Array.isArray(d.loc) ? d.loc.filter((p) => p !== "body").join(".") + ": " : "") + (d.msg || "")).join("; ")
      : String(detail);
  }
  if (hint && message.includes(hint)) hint = "";
  return new ApiError(status, message || fallback || `the server answered ${status}`, code, hint);
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    /* not JSON: a proxy's page, say */
  }
  return errorFrom(response.status, body, `${response.status} ${response.statusText}`.trim());
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = apiKey.get();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

/** fetch with the key; a non-2xx answer throws an ApiError carrying the server's own message. */
export async function call(path, { body, signal } = {}) {
  let response;
  try {
    response = await fetch(path, { method: body === undefined ? "GET" : "POST", headers: headers(), body: body === undefined ? undefined : JSON.stringify(body), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, "cannot reach the server (is tfx serve still running?)", "unreachable");
  }
  if (!response.ok) throw await errorOf(response);
  return response;
}

export async function json(path, options) {
  const response = await call(path, options);
  return { data: await response.json(), response };
}

/** The JSON data of each server-sent event, until [DONE]; an {"error"} event throws. */
export async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let cut;
      while ((cut = pending.indexOf("\n\n")) >= 0) {
        const event = pending.slice(0, cut);
        pending = pending.slice(cut + 2);
        const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).replace(/^ /, "")).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        const item = JSON.parse(data);
        if (item && item.error) throw errorFrom(response.status, item);
        yield item;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
