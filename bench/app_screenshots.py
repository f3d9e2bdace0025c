"""Screenshots of the app's tabs in headless Chromium (Debian's chromium + Python playwright), for the README.

    .venv/bin/python bench/app_screenshots.py [--width 1440 --height 900] [--out docs] [--tabs Reconstruct,Evaluate]

Starts the app on a free loopback port with the demo bundle, opens each tab, presses its main button where it
has one, waits for the result and writes docs/app_<tab>.png. Fails on any error toast or console error.
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# (tab, button to press and wait for, seconds to wait after the click before the picture)
TABS = (("Trials", None, 0), ("Reconstruct", "reconstruct", 0), ("Retrieve", "retrieve", 0),
        ("UMAP", "draw the map", 0), ("Train", "Start", 45), ("Evaluate", "evaluate", 0),
        ("Your image", "show it to the brain, then decode", 0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--height", type=int, default=900)
    p.add_argument("--out", default=str(ROOT / "docs"))
    p.add_argument("--timeout", type=float, default=180, help="seconds to wait for a tab's result")
    p.add_argument("--tabs", default=",".join(t[0] for t in TABS),
                   help="comma-separated tabs to photograph (default: all), e.g. the ones a change touched")
    args = p.parse_args()
    names = {t[0] for t in TABS}
    wanted = [t.strip() for t in args.tabs.split(",")]
    if unknown := [t for t in wanted if t not in names]:
        p.error(f"--tabs: unknown tab(s) {unknown}; the tabs are {', '.join(t[0] for t in TABS)}")
    from playwright.sync_api import sync_playwright
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env)
    errors = []
    try:
        url = f"http://127.0.0.1:{port}/"
        for _ in range(240):
            try:
                urllib.request.urlopen(url, timeout=1)
                break
            except Exception:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(url)
            page.wait_for_selector(".brain-3d .main-svg", timeout=120_000)
            page.wait_for_timeout(2000)
            for tab, button, settle in (t for t in TABS if t[0] in wanted):
                page.get_by_role("tab", name=tab).click()
                page.wait_for_timeout(1500)
                if tab == "Evaluate":  # a handful of trials keeps the picture quick on a laptop
                    box = page.locator("input[type=number]").filter(visible=True).first
                    box.fill("4")
                    box.press("Enter")
                if button == "Start":  # a live training run (the demo preset), cancelled after the picture
                    page.get_by_role("button", name=button, exact=True).click()
                    page.wait_for_timeout(settle * 1000)
                elif button:
                    page.get_by_role("button", name=button, exact=True).click()
                    page.wait_for_timeout(1000)
                    page.wait_for_function("() => !document.querySelector('.progress-text, .eta-bar')",
                                           timeout=args.timeout * 1000)
                    page.wait_for_timeout(1500)
                toasts = page.locator(".toast-body.error").all_inner_texts()
                if toasts:
                    errors.append(f"{tab}: {toasts}")
                path = Path(args.out) / f"app_{tab.lower().replace(' ', '_')}_{args.width}.png"
                page.screenshot(path=str(path), full_page=True)
                print(f"wrote {path}")
                # a fast machine may have finished the run already: Cancel would then (rightly) say so in a toast
                if button == "Start" and not page.locator("td").filter(has_text="finished").count():
                    page.get_by_role("button", name="Cancel", exact=True).click()
                    page.wait_for_timeout(2000)
            browser.close()
    finally:
        app.terminate()
        app.wait(timeout=30)
    if errors:
        raise SystemExit(f"errors in the page: {errors}")


if __name__ == "__main__":
    main()
