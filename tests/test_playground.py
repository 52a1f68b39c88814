"""The playground page, end to end in headless Chromium (Debian's `chromium`; Playwright may not download
its own browser here): a prompt streams its continuation token by token, fill-mask shows probability bars,
a bad input shows the server's own error message. A screenshot of each is kept under
.pytest_cache/artifacts/ (or $TFX_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import tiny_models as tm
from test_serve import KEY, Server

CHROMIUM = os.environ.get("TFX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")

GPT2, BERT = "tfx-test/tiny-gpt2", "tfx-test/tiny-bert"
ARTIFACTS = Path(os.environ.get("TFX_TEST_ARTIFACTS") or Path(__file__).resolve().parent.parent / ".pytest_cache" / "artifacts")


@pytest.fixture(scope="module")
def server(hub_cache):
    env = {k: v for k, v in os.environ.items() if k not in ("TFX_SERVER", "TFX_API_KEY")}
    env["HF_HUB_CACHE"] = str(hub_cache)
    s = Server(["-m", GPT2, "-m", BERT, "--api-key", KEY], env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def page(server):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1100, "height": 800})
        page.set_default_timeout(120_000)  # a loaded 2-core CI box: the first request may wait for a model load
        page.goto(server.url + "/")
        page.fill("#key", KEY)
        page.dispatch_event("#key", "change")
        # (no wait_for_function: it evaluates a string, which the page's Content-Security-Policy forbids)
        page.wait_for_selector("#model option >> nth=1", state="attached")
        yield page
        browser.close()


def choose(page, model: str, task: str, text: str) -> None:
    page.select_option("#model", model)
    page.select_option("#task", task)
    page.fill("#input", text)


def test_the_page_is_served_without_the_key_and_the_api_still_needs_it(server):
    status, headers, body = server.request("GET", "/", key=None)
    assert status == 200 and "tfx playground" in body and "default-src 'self'" in headers["content-security-policy"]
    assert server.request("GET", "/playground/playground.js", key=None)[0] == 200
    assert server.request("GET", "/playground/../app.py", key=None)[0] == 401  # only the page's own files are public
    assert server.request("GET", "/playground/index.py")[0] == 404  # and nothing else of the package is served
    assert server.request("GET", "/v1/models", key=None)[0] == 401


def test_generation_streams_token_by_token(page):
    prompt, continuation = tm.GPT2_CASES[1]
    choose(page, GPT2, "generate", prompt)
    page.fill("#max_new_tokens", "12")
    # Count the times the text grows: a stream shows pieces as they come, not one final answer.
    page.evaluate("""() => { window.grew = 0; new MutationObserver(() => { window.grew += 1; })
        .observe(document.getElementById('output'), {subtree: true, childList: true, characterData: true}); }""")
    page.click("#run")
    page.wait_for_selector("#stream[data-done=true]")
    text = page.inner_text("#stream")
    assert text.startswith(prompt) and continuation.strip().split()[0] in text
    assert page.evaluate("window.grew") > 3, "the continuation arrived in one piece, not streamed"
    page.screenshot(path=str(ARTIFACTS / "playground-generate.png"))


def test_fill_mask_shows_probability_bars(page):
    sentence, word = tm.FILL_MASK_CASES[1]
    choose(page, BERT, "fill-mask", sentence)
    assert page.is_hidden("#context") and page.is_hidden("#max_new_tokens")  # only this task's options show
    page.fill("#top_k", "3")
    page.click("#run")
    page.wait_for_selector(".bar")
    labels = page.locator(".bar .label").all_inner_texts()
    widths = page.locator(".bar .fill").evaluate_all("bars => bars.map(b => parseFloat(b.style.width))")
    assert labels[0] == word and len(labels) == 3
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    page.screenshot(path=str(ARTIFACTS / "playground-fill-mask.png"))


def test_a_bad_input_shows_the_servers_error(page):
    choose(page, BERT, "fill-mask", "A sentence without any mask.")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert "no mask" in page.inner_text("#error")
    page.screenshot(path=str(ARTIFACTS / "playground-error.png"))
