"""The app in a real browser (Debian's chromium driven by Playwright), on the tiny stack: open every tab, use
its main control, and fail on any error toast or console error. Under CI (CI=true) a missing chromium fails
the test rather than skipping it: `.ci/run` installs it."""
from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# chromium's own chatter about its software GL renderer, not the page's errors
BROWSER_NOISE = ("GL Driver Message", "WebGL", "GPU stall", "willReadFrequently")


@pytest.fixture(scope="module")
def engine(stack_engine):
    return stack_engine


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        if IN_CI:
            pytest.fail(f"chromium not found at {CHROMIUM}: .ci/run installs it (apt-get install -y chromium)")
        pytest.skip("chromium not installed (apt-get install -y chromium); CI installs it and runs this test")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


def _wait_idle(page, timeout_s=180):
    page.wait_for_timeout(800)
    page.wait_for_function("() => !document.querySelector('.progress-text, .eta-bar')", timeout=timeout_s * 1000)
    page.wait_for_timeout(500)


def _launch(engine):
    """The app on a free loopback port: ``(demo, port)``."""
    from app import HEAD, build_app

    from .conftest import free_port
    port = free_port()
    demo = build_app(engine)
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, head=HEAD)
    return demo, port


def test_every_tab_works_in_a_browser(engine, browser):
    demo, port = _launch(engine)
    errors, done = [], []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not any(
        n in m.text for n in BROWSER_NOISE) else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))

    def toasts(where):
        msgs = page.locator(".toast-body.error").all_inner_texts()
        assert not msgs, f"{where}: error toast {msgs}"
        assert not errors, f"{where}: console errors {errors}"
        done.append(where)

    try:
        page.goto(f"http://127.0.0.1:{port}/?trial=5")
        page.wait_for_selector(".brain-3d .main-svg", timeout=60_000)  # the surface is drawn
        assert "trial 5" in page.locator("text=test trial 5").first.inner_text()
        page.get_by_role("button", name="next ▶").click()
        page.wait_for_selector("text=test trial 6", timeout=30_000)
        assert "trial=6" in page.url
        for label, option in (("view", "left medial"), ("map", "visual areas")):
            page.get_by_label(label, exact=True).first.click()
            page.get_by_role("option", name=option).click()
            page.wait_for_timeout(1500)
        assert page.locator(".brain-3d").first.inner_text().count("V1") >= 1  # categorical legend
        toasts("Trials")

        for tab, button in (("Reconstruct", "reconstruct"), ("Retrieve", "retrieve"), ("UMAP", "draw the map"),
                            ("Your image", "show it to the brain, then decode")):
            page.get_by_role("tab", name=tab).click()
            page.get_by_role("button", name=button, exact=True).click()
            _wait_idle(page)
            toasts(tab)
            assert f"tab={tab.lower().replace(' ', '-')}" in page.url

        page.get_by_label("upload a picture").check()  # Your image's other sources: the upload box shows
        page.wait_for_selector("text=your picture (up to 10 MB)", timeout=10_000)
        page.get_by_label("draw a picture").check()  # a drawing: a red blob painted on the canvas, then decoded
        page.locator("#sketch canvas").first.wait_for(timeout=20_000)
        box = page.locator("#sketch").bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.45)
        page.mouse.down()
        for k in range(20):
            page.mouse.move(box["x"] + box["width"] * (0.42 + 0.008 * k), box["y"] + box["height"] * (0.45 + 0.01 * (k % 4)),
                            steps=3)
        page.mouse.up()
        page.get_by_role("button", name="show it to the brain, then decode", exact=True).click()
        _wait_idle(page)
        page.wait_for_selector("text=the judge reads", timeout=30_000)
        page.get_by_label("compose a scene").check()
        toasts("Your image upload and drawing")

        page.get_by_role("tab", name="Evaluate").click()
        box = page.locator("input[type=number]").filter(visible=True).first
        box.fill("2")
        box.press("Enter")
        page.get_by_role("button", name="evaluate", exact=True).click()
        _wait_idle(page)
        toasts("Evaluate")

        page.get_by_role("tab", name="Train").click()
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_selector(".live-plot .main-svg", timeout=60_000)
        page.wait_for_timeout(3000)
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.wait_for_selector("text=cancelled", timeout=30_000)
        toasts("Train")
    finally:
        for r in engine.runs.list():
            if r.status == "running":
                engine.runs.cancel(r.name)
        page.close()
        demo.close()
    assert done == ["Trials", "Reconstruct", "Retrieve", "UMAP", "Your image", "Your image upload and drawing", "Evaluate",
                    "Train"]


def test_train_tab_shows_and_cancels_the_run_it_started_when_a_slow_refresh_lands_after_start(engine, browser):
    """A refresh tick that read the page's state before Start and answers after it must not put the view, and
    so Cancel, back on another run (seen in the app: Cancel then refused an older, already cancelled run while
    the new one kept training)."""
    import json
    import threading
    import time

    older = engine.runs.path("older_run")
    older.mkdir(parents=True, exist_ok=True)
    (older / "config.json").write_text(json.dumps({"model_name": "older_run", "num_epochs": 1, "subj": 1}))
    os.utime(older / "config.json", (time.time() - 3600,) * 2)  # an hour old: the newest run until Start
    runs, real_list = engine.runs, engine.runs.list
    armed, listed = threading.Event(), threading.Event()

    def slow_list():  # the first listing after arming is read at once and answered 4 s late
        out = real_list()
        if armed.is_set():
            armed.clear()
            listed.set()
            time.sleep(4)
        return out

    runs.list = slow_list
    demo, port = _launch(engine)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.wait_for_selector(".brain-3d .main-svg", timeout=60_000)
        shown = page.get_by_label("run shown below", exact=True)
        armed.set()
        page.get_by_role("tab", name="Train").click()  # turns on the refresh ticks: the first one is the slow one
        assert listed.wait(20), "no refresh tick listed the runs within 20 s"
        new = page.get_by_label("run name (letters, digits, _ and -)", exact=True).input_value()
        page.get_by_role("button", name="Start", exact=True).click()
        page.wait_for_selector(f"text=started {new}", timeout=30_000)
        page.wait_for_timeout(5000)  # the slow tick has answered by now
        assert shown.input_value() == new
        page.get_by_role("button", name="Cancel", exact=True).click()
        page.wait_for_selector(f"text=cancelled {new}", timeout=30_000)
        assert not page.locator(".toast-body.error").all_inner_texts()
        assert runs.status(new).status == "cancelled"
    finally:
        runs.list = real_list
        for r in real_list():
            if r.status == "running":
                runs.cancel(r.name)
        page.close()
        demo.close()
