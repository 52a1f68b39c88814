"""Regenerate the playground screenshots the README shows (docs/playground.png, docs/playground-chat.png).

    python docs/make_screenshots.py                 # the test suite's tiny models (built offline, once)
    python docs/make_screenshots.py --out /tmp/shots

It starts `tfx serve --api-key` on the tiny models of tests/ (no network: the same cache the tests build), and
drives Debian's chromium (`apt-get install chromium`, or TFX_CHROMIUM=/path) through Playwright, as
tests/test_playground.py does. With `fonts-inter` installed the page renders in Inter, as on most desktops."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "screenshot-key"
MODELS = ("tfx-test/tiny-chat", "tfx-test/tiny-gpt2", "tfx-test/tiny-bert", "tfx-test/tiny-squad", "tfx-test/tiny-ner", "tfx-test/tiny-minilm")


def hub_cache() -> str:
    """The tiny models' hub cache, built as the tests build it (imports tests/conftest for its builder)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import conftest  # noqa: E402 - sets the offline environment of the tests too

    return str(conftest.build_tiny_models_cached())


def serve(cache: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "HF_HUB_CACHE": cache, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TFX_API_KEY", None)
    args = [sys.executable, "-m", "tfx", "serve", "--port", "0", "--api-key", KEY, *(a for m in MODELS for a in ("-m", m))]
    proc = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found: list[str] = []
    ready = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            match = re.search(r"serving on (http://\S+)", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    ready.wait(120)
    if not found:
        proc.terminate()
        raise SystemExit("tfx serve did not start (is the serve extra installed?)")
    return proc, found[0]


def shoot(url: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    chromium = os.environ.get("TFX_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("no Chromium: apt-get install chromium (or set TFX_CHROMIUM)")
    made = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 760}, color_scheme="light")
        page.set_default_timeout(120_000)
        page.goto(url + "/")
        page.fill("#key", KEY)
        page.press("#key", "Enter")
        page.wait_for_selector("#workspace:not([hidden])")

        page.click('.nav-item[data-view="qa"]')
        page.fill("#qa [name=model]", "tfx-test/tiny-squad")
        page.fill("#qa [name=input]", "Who wrote the report?")
        page.fill("#qa [name=context]", "The report about the floods was written by Alice Smith last year.")
        page.click("#qa button.run")
        page.wait_for_selector("#qa .result .answer-text")
        page.mouse.move(0, 0)
        made.append(out / "playground.png")
        page.screenshot(path=str(made[-1]))

        page.click('.nav-item[data-view="chat"]')
        page.fill("#chat [name=model]", "tfx-test/tiny-chat")
        page.fill("#chat [name=input]", "What is the capital of France?")
        page.press("#chat [name=input]", "Enter")
        page.wait_for_selector("#chat .msg.assistant .stats")
        page.mouse.move(0, 0)
        made.append(out / "playground-chat.png")
        page.screenshot(path=str(made[-1]))
        browser.close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default: docs/)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    proc, url = serve(hub_cache())
    try:
        for path in shoot(url, args.out):
            print(path)
    finally:
        proc.terminate()
        proc.wait(15)


if __name__ == "__main__":
    main()
