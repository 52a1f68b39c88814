"""The playground page, end to end in headless Chromium (Debian's `chromium`; Playwright may not download
its own browser here), against one `tfx serve --api-key` of tiny models for the whole module: the key asked
once (and a refused key's error gone once the right one is in), a chat of two streamed turns, regenerate and
stop, every task's own view, compared with what the API answers to the same request, model output shown as
text, the 390 px layout. A screenshot of each is kept under .pytest_cache/artifacts/ (or $TFX_TEST_ARTIFACTS)."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import tiny_chat as tc
import tiny_encoders as te
import tiny_models as tm
import tiny_retrieval as tr
from test_serve import KEY, Server

CHROMIUM = os.environ.get("TFX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")

GPT2, CHAT, BERT, SST2, NER = "tfx-test/tiny-gpt2", "tfx-test/tiny-chat", "tfx-test/tiny-bert", "tfx-test/tiny-sst2", "tfx-test/tiny-ner"
SQUAD, MINILM, MARIAN, BART = "tfx-test/tiny-squad", "tfx-test/tiny-minilm", "tfx-test/tiny-marian-en-de", "tfx-test/tiny-bart"
ARTIFACTS = Path(os.environ.get("TFX_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / ".pytest_cache" / "artifacts")
VIEWS = ("chat", "generate", "fill-mask", "classify", "ner", "qa", "translate", "summarize", "embed", "rank")
WAIT_MS = 120_000  # a loaded 2-core CI box: a request may wait for a model load


@pytest.fixture(scope="module")
def server(hub_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    models = [GPT2, CHAT, BERT, SST2, NER, SQUAD, MINILM, MARIAN, BART]
    s = Server([a for m in models for a in ("-m", m)] + ["--api-key", KEY], env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def browser(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_page(browser, server, **options):
    """A fresh tab with the key entered through the page's own form."""
    page = browser.new_context(**{"viewport": {"width": 1280, "height": 860}, **options}).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + "/")
    page.fill("#key", KEY)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#workspace:not([hidden])")
    return page


@pytest.fixture(scope="module")
def page(browser, server):
    page = open_page(browser, server)
    errors = []
    page.on("pageerror", lambda error: errors.append(error))
    yield page
    page.context.close()
    assert not errors, f"the page's scripts failed: {errors}"


def shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"playground-{name}.png"), full_page=True)


def view(page, name: str):
    page.click(f'.nav-item[data-view="{name}"]')
    page.wait_for_selector(f"#{name}:not([hidden])")
    return page.locator(f"#{name}")


def run(page, task: str, model: str, **fields):
    """Fill a task's form, submit it and wait for its answer or its error."""
    v = view(page, task)
    v.locator("[name=model]").fill(model)
    for name, value in fields.items():
        box = v.locator(f"[name={name}]")
        box.set_checked(value) if isinstance(value, bool) else box.fill(str(value))
    v.locator("button.run").click()
    page.wait_for_selector(f"#{task}:not(.busy)", state="attached")
    return v


def api(server, task: str, body: dict) -> dict:
    status, _, data = server.request("POST", f"/v1/{task}", body)
    assert status == 200, data
    return data


def widths(locator) -> list[float]:
    return locator.evaluate_all("fills => fills.map(f => f.getBoundingClientRect().width / f.parentElement.getBoundingClientRect().width)")


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_served_without_the_key_and_the_api_still_needs_it(server):
    status, headers, body = server.request("GET", "/", key=None)
    csp = headers["content-security-policy"]
    assert status == 200 and "tfx playground" in body and "default-src 'self'" in csp and "unsafe" not in csp
    tags = _Tags()
    tags.feed(body)
    assert all(attrs.get("src") for tag, attrs in tags.tags if tag == "script"), "an inline script (the CSP refuses it)"
    assert not any(tag == "style" or "style" in attrs for tag, attrs in tags.tags), "an inline style (the CSP refuses it)"
    for name in ("playground.js", "api.js", "dom.js", "tasks.js", "chat.js", "playground.css"):
        assert server.request("GET", f"/playground/{name}", key=None)[0] == 200, name
    assert server.request("GET", "/playground/../app.py", key=None)[0] == 401  # only the page's own files are public
    assert server.request("GET", "/playground/index.py")[0] == 404  # and nothing else of the package is served
    assert server.request("GET", "/v1/models", key=None)[0] == 401


def test_the_key_is_asked_once_per_tab_and_a_refused_keys_error_goes_with_the_right_key(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(server.url + "/")
    page.wait_for_selector("#gate:not([hidden])")
    assert page.is_hidden("#workspace") and page.locator("#nav .nav-item").count() == len(VIEWS)  # no form before the key
    assert page.evaluate("document.activeElement.id") == "key"
    page.fill("#key", "not-the-key")
    page.press("#key", "Enter")
    page.wait_for_selector("#key-error:not([hidden])")
    assert "refused" in page.inner_text("#key-error") and "API key" in page.inner_text("#key-error")
    shot(page, "key-refused")
    page.fill("#key", KEY)
    page.press("#key", "Enter")
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.is_hidden("#key-error") and page.inner_text("#key-error") == "" and page.is_hidden("#gate")
    page.reload()  # kept for the tab: no second question
    page.wait_for_selector("#workspace:not([hidden])")
    assert page.is_hidden("#gate") and page.evaluate("localStorage.getItem('tfx-key')") is None
    other = context.new_page()  # another tab asks again: sessionStorage, not localStorage
    other.goto(server.url + "/")
    other.wait_for_selector("#gate:not([hidden])")
    context.close()


def test_a_chat_of_two_turns_streams_and_sends_the_history(page, server):
    v = view(page, "chat")
    v.locator("[name=model]").fill(CHAT)
    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.url.endswith("/v1/chat/completions") else None)
    page.evaluate("""() => { window.grew = 0; new MutationObserver(() => { window.grew += 1; })
        .observe(document.querySelector('#chat .messages'), {subtree: true, childList: true, characterData: true}); }""")
    history = []
    for turn, (user, _) in enumerate(tc.CHAT_CASES[:2]):
        box = v.locator("[name=input]")
        box.fill(user)
        box.press("Enter")
        page.wait_for_selector(f"#chat .msg.assistant >> nth={turn} >> .stats")
        history.append({"role": "user", "content": user})
        assert sent[-1]["messages"] == history and sent[-1]["stream"] is True  # the second turn carries the first
        expected = server.client().chat.completions.create(model=CHAT, messages=history).choices[0].message.content
        reply = v.locator(".msg.assistant .msg-body").nth(turn).inner_text()
        assert reply == expected
        history.append({"role": "assistant", "content": reply})
        if turn == 0:
            assert page.evaluate("window.grew") > 3, "the reply arrived in one piece, not streamed"
    stats = v.locator(".msg.assistant .stats").nth(1).inner_text()
    assert re.fullmatch(r"\d+ tokens? · \d+ ms · [\d.]+ tok/s", stats), stats
    assert v.locator(".msg.assistant").first.locator(".regenerate").count() == 0  # only the last reply
    shot(page, "chat")
    v.locator(".msg.assistant .regenerate").click()  # the last reply again, from the same history
    page.wait_for_selector("#chat:not(.busy) .msg.assistant >> nth=1 >> .stats")
    assert len(sent) == 3 and sent[-1]["messages"] == history[:-1]
    assert v.locator(".msg").count() == 4 and v.locator(".msg.assistant .msg-body").nth(1).inner_text() == history[-1]["content"]
    v.locator(".new-chat").click()
    assert v.locator(".msg").count() == 0


def test_a_model_without_a_chat_template_says_so_and_the_message_is_kept(page):
    v = view(page, "chat")
    v.locator("[name=model]").fill(GPT2)
    v.locator("[name=input]").fill(tc.CHAT_CASES[0][0])
    v.locator("[name=input]").press("Enter")
    page.wait_for_selector("#chat .error:not([hidden])")
    assert "no chat template" in v.locator(".error").inner_text() and "Generate" in v.locator(".error").inner_text()
    assert v.locator(".msg").count() == 0 and v.locator("[name=input]").input_value() == tc.CHAT_CASES[0][0]
    v.locator("[name=model]").fill(CHAT)
    v.locator("[name=input]").press("Enter")
    page.wait_for_selector("#chat .msg.assistant .stats")
    assert page.is_hidden("#chat .error")
    v.locator(".new-chat").click()


def test_stop_aborts_a_reply_that_does_not_come(page):
    v = view(page, "chat")
    v.locator("[name=model]").fill(CHAT)
    held = []
    page.route("**/v1/chat/completions", lambda route: held.append(route))  # never answered: it hangs until stopped
    try:
        v.locator("[name=input]").fill(tc.CHAT_CASES[2][0])
        v.locator("button.send").click()
        page.wait_for_selector("#chat button.stop:visible")
        assert v.locator("button.send").is_disabled() and len(held) == 1
        v.locator("button.stop").click()
        page.wait_for_selector("#chat button.stop", state="hidden")
        assert v.locator("button.send").is_enabled() and v.locator(".msg.user").count() == 1
        assert v.locator(".msg.assistant").count() == 0 and v.locator(".msg.user .regenerate").inner_text() == "Retry"
        assert page.is_hidden("#chat .error")
    finally:
        page.unroute("**/v1/chat/completions")
    v.locator(".new-chat").click()


def test_generation_streams_token_by_token_with_its_token_count(page, server):
    prompt, continuation = tm.GPT2_CASES[1]
    view(page, "generate")
    page.evaluate("""() => { window.grew = 0; new MutationObserver(() => { window.grew += 1; })
        .observe(document.querySelector('#generate .results'), {subtree: true, childList: true, characterData: true}); }""")
    v = run(page, "generate", GPT2, input=prompt, max_new_tokens=12)
    page.wait_for_selector("#stream[data-done=true]")
    expected = api(server, "generate", {"model": GPT2, "input": prompt, "max_new_tokens": 12})["results"][0]
    assert page.inner_text("#stream") == expected["output"] and continuation.split()[0] in expected["output"]
    assert page.evaluate("window.grew") > 3, "the continuation arrived in one piece, not streamed"
    assert v.locator(".stats").inner_text().startswith(f"{expected['generated_tokens']} tokens · ")
    shot(page, "generate")


def test_fill_mask_bars_a_stale_error_ctrl_enter_and_copy(page, server):
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    v = run(page, "fill-mask", BERT, input="A sentence without any mask.")
    page.wait_for_selector("#fill-mask .error:not([hidden])")
    assert "no mask" in v.locator(".error").inner_text()
    shot(page, "error")
    sentence, word = tm.FILL_MASK_CASES[1]
    v.locator("[name=input]").fill(sentence)
    v.locator("[name=top_k]").fill("3")
    v.locator("[name=input]").press("Control+Enter")
    page.wait_for_selector("#fill-mask .result .bar")
    assert page.is_hidden("#fill-mask .error"), "the last request's error stayed after a success"
    (expected,) = api(server, "fill-mask", {"model": BERT, "input": sentence, "top_k": 3})["results"]
    assert v.locator(".bar .label").all_inner_texts() == [c["token"] for c in expected["predictions"][0]]
    assert v.locator(".bar .label").first.inner_text() == word and v.locator("mark.filled").inner_text() == word
    shares = widths(v.locator(".bar .fill"))
    assert shares == pytest.approx([max(c["score"], 0.005) for c in expected["predictions"][0]], abs=0.01)  # the bars' lengths are the scores
    v.locator("button.copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == expected["output"]
    v.locator("[name=top_k]").focus()
    page.keyboard.press("Tab")  # keyboard focus lands on Run, with a visible ring
    assert page.evaluate("document.activeElement.classList.contains('run')")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    shot(page, "fill-mask")


def test_the_model_field_lists_the_servers_models_and_takes_any_cached_one(page, server):
    view(page, "fill-mask")
    listed = page.locator("#models-fill-mask option").evaluate_all("os => os.map(o => o.value)")
    assert BERT in listed and GPT2 not in listed  # the models that serve the task
    roberta = "tfx-test/tiny-roberta"  # in the cache, not started by the server: it loads on first use
    assert roberta not in listed
    sentence = tm.with_mask(tm.FILL_MASK_CASES[2][0], "<mask>")
    v = run(page, "fill-mask", roberta, input=sentence, top_k=5)
    page.wait_for_selector("#fill-mask .result .bar")
    (expected,) = api(server, "fill-mask", {"model": roberta, "input": sentence, "top_k": 5})["results"]
    assert v.locator(".bar .label").all_inner_texts() == [c["token"] for c in expected["predictions"][0]]
    page.wait_for_selector(f'#models-fill-mask option[value="{roberta}"]', state="attached")  # offered from now on


@pytest.mark.parametrize(
    "status, body, shown",
    [
        (400, {"error": {"message": "top_k: must be at least 1", "type": "invalid_request_error", "param": "top_k", "code": "invalid_value"}}, "top_k: must be at least 1"),
        (422, {"detail": [{"loc": ["body", "inputs", 0], "msg": "Input should be a valid string", "type": "string_type"}]}, "inputs.0: Input should be a valid string"),
    ],
)
def test_validation_errors_show_in_openais_shape_and_fastapis(page, status, body, shown):
    page.route("**/v1/classify", lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body)))
    try:
        v = run(page, "classify", SST2)
        page.wait_for_selector("#classify .error:not([hidden])")
        assert v.locator(".error").inner_text() == shown
    finally:
        page.unroute("**/v1/classify")


def test_classify_shows_a_bar_per_label(page, server):
    texts = [te.SENTIMENT_CASES[0][0], te.SENTIMENT_CASES[3][0]]
    v = run(page, "classify", SST2, input="\n".join(texts))
    page.wait_for_selector("#classify .result .bar")
    expected = api(server, "classify", {"model": SST2, "inputs": texts})["results"]
    records = v.locator(".record")
    assert records.count() == 2
    for i, r in enumerate(expected):
        assert records.nth(i).locator(".record-input").inner_text() == r["input"]
        assert records.nth(i).locator(".bar .label").all_inner_texts() == [c["label"] for c in r["labels"]]
        assert widths(records.nth(i).locator(".fill")) == pytest.approx([c["score"] for c in r["labels"]], abs=0.01)
    shot(page, "classify")


def test_ner_marks_each_entity_in_the_text(page, server):
    sentence = te.ner_sentence(te.NER_CASES[1])
    v = run(page, "ner", NER, input=sentence)
    page.wait_for_selector("#ner .result mark.ent")
    (expected,) = api(server, "ner", {"model": NER, "input": sentence})["results"]
    marks = v.locator("mark.ent")
    assert [(e["word"], e["label"]) for e in expected["entities"]] == te.ner_entities(te.NER_CASES[1])
    assert marks.evaluate_all("ms => ms.map(m => [m.firstChild.textContent, m.querySelector('.tag').textContent])") == [[e["word"], e["label"]] for e in expected["entities"]]
    assert v.locator(".ner-text").evaluate("p => [...p.childNodes].map(n => n.nodeType === 3 ? n.textContent : n.firstChild.textContent).join('')") == sentence
    shot(page, "ner")


def test_qa_highlights_the_answer_in_its_context(page, server):
    question, context, answer = tr.QA_CASES[1]
    v = run(page, "qa", SQUAD, input=question, context=context)
    page.wait_for_selector("#qa .result .answer-text")
    (expected,) = api(server, "qa", {"model": SQUAD, "input": question, "context": context, "top_k": 3})["results"]
    assert v.locator(".answer-text").inner_text() == expected["output"] == answer
    assert v.locator(".context mark.answer-span").inner_text() == context[expected["start"] : expected["end"]]
    assert v.locator(".context").inner_text() == context
    assert v.locator(".bar .label").all_inner_texts() == [a["answer"] for a in expected["answers"][1:]]
    shot(page, "qa")


def test_translate_and_summarize_show_source_and_output_side_by_side(page, server):
    sources = [s for s, _ in tm.MARIAN_TRANSLATIONS[:2]]
    v = run(page, "translate", MARIAN, input="\n".join(sources), to="de")
    page.wait_for_selector("#translate .result .side-row")
    expected = api(server, "translate", {"model": MARIAN, "inputs": sources, "from": "en", "to": "de"})["results"]
    rows = v.locator(".side-row")
    assert rows.count() == 2
    for i, r in enumerate(expected):
        source, target = rows.nth(i).locator(".source"), rows.nth(i).locator(".target")
        assert (source.inner_text(), target.inner_text()) == (r["input"], r["output"])
        a, b = source.bounding_box(), target.bounding_box()
        assert a["y"] == b["y"] and b["x"] >= a["x"] + a["width"], "not side by side"
    assert " tokens · " in v.locator(".stats").inner_text()
    shot(page, "translate")
    v = run(page, "summarize", BART, input=tm.ARTICLE)
    page.wait_for_selector("#summarize .result .side-row")
    (expected,) = api(server, "summarize", {"model": BART, "input": tm.ARTICLE})["results"]
    assert v.locator(".side-row .target").inner_text() == expected["output"]
    assert v.locator(".side-row .source").inner_text() == tm.ARTICLE
    shot(page, "summarize")


def test_embed_shows_the_similarity_matrix_of_the_lines(page, server):
    texts = [tr.FAQ[0][0], tr.FAQ[0][1], tr.FAQ[3][1]]
    v = run(page, "embed", MINILM, input="\n".join(texts))
    page.wait_for_selector("#embed .result td.sim")
    vectors = [r["embedding"] for r in api(server, "embed", {"model": MINILM, "inputs": texts})["results"]]

    def cosine(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    cells = v.locator("td.sim").evaluate_all("cs => cs.map(c => [+c.dataset.i, +c.dataset.j, c.textContent])")
    assert len(cells) == 9
    for i, j, text in cells:
        assert text == f"{cosine(vectors[i], vectors[j]):.2f}", (i, j)
    assert v.locator("tbody th .t").all_inner_texts() == texts
    assert f"{len(vectors[0])} dimensions" in v.locator(".result-body").inner_text()
    shot(page, "embed")


def test_rank_orders_the_documents_best_first(page, server):
    query = tr.FAQ[1][0]
    docs = tr.FAQ_DOCS[:4]
    v = run(page, "rank", MINILM, query=query, input="\n".join(docs))
    page.wait_for_selector("#rank .result .ranked li")
    scores = [r["score"] for r in api(server, "rank", {"model": MINILM, "query": query, "inputs": docs})["results"]]
    best_first = sorted(range(len(docs)), key=lambda i: -scores[i])
    assert v.locator(".ranked .doc").all_inner_texts() == [docs[i] for i in best_first]
    assert v.locator(".ranked .value").all_inner_texts() == [f"{scores[i]:.3f}" for i in best_first]
    shot(page, "rank")


XSS = '<img src=x onerror="window.pwned=1">'


def test_model_output_is_shown_as_text_never_as_html(page):
    # Any element made from markup, even for a moment (the CSP would stop the handler; the element is the bug).
    page.evaluate("""() => { window.markup = []; new MutationObserver((changes) => { for (const c of changes) for (const n of c.addedNodes)
        if (n.nodeType === 1 && (n.matches('img, b') || n.querySelector('img, b'))) window.markup.push(n.outerHTML); })
        .observe(document.body, {subtree: true, childList: true}); }""")
    v = run(page, "fill-mask", BERT, input=XSS + " Paris is the [MASK] of France.")
    page.wait_for_selector("#fill-mask .result .sentence")
    assert v.locator(".sentence").inner_text().startswith(XSS)
    assert page.locator("#workspace img").count() == 0
    # A chat reply (and its statistics) made of markup, injected in the server's own stream format.
    chunk = {"choices": [{"index": 0, "delta": {"content": XSS + "<b>bold</b>"}, "finish_reason": None}]}
    stream = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
    page.route("**/v1/chat/completions", lambda route: route.fulfill(status=200, content_type="text/event-stream", body=stream))
    try:
        v = view(page, "chat")
        v.locator("[name=model]").fill(CHAT)
        v.locator("[name=input]").fill(XSS)
        v.locator("[name=input]").press("Enter")
        page.wait_for_selector("#chat .msg.assistant .stats")
        assert v.locator(".msg.assistant .msg-body").inner_text() == XSS + "<b>bold</b>"
        assert v.locator(".msg.user .msg-body").inner_text() == XSS
        assert page.locator("#workspace img, #workspace b").count() == 0
        assert page.evaluate("window.pwned") is None and page.evaluate("window.markup") == []
        shot(page, "markup-as-text")
    finally:
        page.unroute("**/v1/chat/completions")
    v.locator(".new-chat").click()


def test_the_narrow_layout_has_no_sideways_scroll_in_any_view_light_or_dark(browser, server, page):
    light = page.evaluate("getComputedStyle(document.body).backgroundColor")
    narrow = open_page(browser, server, viewport={"width": 390, "height": 844}, color_scheme="dark", is_mobile=True)
    try:
        assert narrow.evaluate("getComputedStyle(document.body).backgroundColor") != light  # prefers-color-scheme
        fields = {"fill-mask": (BERT, {}), "embed": (MINILM, {}), "translate": (MARIAN, {}), "ner": (NER, {})}
        for name in VIEWS:
            if name in fields:
                run(narrow, name, fields[name][0], **fields[name][1])
                narrow.wait_for_selector(f"#{name} .result")
            else:
                view(narrow, name)
            assert narrow.evaluate("document.scrollingElement.scrollWidth") <= 390, name
        view(narrow, "chat").locator("[name=model]").fill(CHAT)
        narrow.locator("#chat [name=input]").fill(tc.CHAT_CASES[1][0])
        narrow.locator("#chat [name=input]").press("Enter")
        narrow.wait_for_selector("#chat .msg.assistant .stats")
        assert narrow.evaluate("document.scrollingElement.scrollWidth") <= 390
        shot(narrow, "narrow-chat-dark")
        view(narrow, "embed")
        shot(narrow, "narrow-embed-dark")
    finally:
        narrow.context.close()
