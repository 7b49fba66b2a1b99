"""`make screenshots`: the README's pictures of report.html: the first screen at a laptop's and a phone's size, and
"Fix first" (root causes with the findings they explain), and the suppressed findings, opened.

Usage: python tests/screenshots.py REPORT_HTML OUT_DIR   (`make screenshots`: reports/demo -> reports/example)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

SIZES = {"report-1440x900.png": (1440, 900), "report-390x844.png": (390, 844)}


def main(report: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium is not installed (Debian package `chromium`)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        for name, (width, height) in SIZES.items():
            page = browser.new_page(viewport={"width": width, "height": height})
            page.goto(report.resolve().as_uri())
            page.wait_for_selector("body[data-rendered='1']")
            page.screenshot(path=str(out / name))
            page.close()
            print(out / name)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(report.resolve().as_uri())
        page.wait_for_selector("body[data-rendered='1']")
        page.evaluate("document.getElementById('suppressed').open = true")
        for name, selector in (("report-fix-first.png", ".top-findings"), ("report-suppressed.png", "#suppressed")):
            page.locator(selector).screenshot(path=str(out / name))
            print(out / name)
        page.close()
        browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
