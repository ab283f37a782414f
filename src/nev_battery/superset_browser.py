"""Opens every dashboard in headless Chromium as a user would, records what failed and writes a
screenshot of each. Run by the BI virtualenv's Python (Playwright is installed there, driving
Debian's /usr/bin/chromium: no browser download):

    python superset_browser.py <base url> <username> <password> <out dir> <slug> [<slug> ...]

Prints one JSON object: {slug: {"failed": [...requests with status >= 400 or that failed],
"errors": [...texts of error panels], "charts": n, "screenshot": path, "seconds": s}}."""

from __future__ import annotations

import json
import os
import sys
import time

CHROMIUM = os.environ.get("NEV_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]
# what Superset shows instead of a chart when its query or rendering failed
ERROR_SELECTORS = ('[data-test="error-tooltip"]', ".ant-alert-error", '[role="alert"].ant-alert',
                   '[data-test="chart-error"]', ".alert-danger")
LOADING = '[data-test="loading-indicator"], .loading, [aria-label="Loading"]'


def main(base: str, user: str, password: str, out: str, slugs: list[str]) -> int:
    from playwright.sync_api import sync_playwright

    os.makedirs(out, exist_ok=True)
    report = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        ctx = browser.new_context(viewport={"width": 1600, "height": 1200})
        page = ctx.new_page()
        page.goto(f"{base}/login/", wait_until="networkidle")
        page.fill('input[name="username"], #username', user)
        page.fill('input[name="password"], #password', password)
        page.keyboard.press("Enter")
        page.wait_for_url(lambda u: "/login" not in u, timeout=60_000)
        page.close()
        for slug in slugs:
            failed: list[str] = []
            page = ctx.new_page()  # a page per dashboard: its own request listeners
            page.on("response", lambda r, f=failed: f.append(f"{r.status} {r.url}")
                    if r.status >= 400 else None)
            page.on("requestfailed", lambda r, f=failed: f.append(f"failed {r.url}: {r.failure}"))
            t0 = time.perf_counter()
            page.goto(f"{base}/superset/dashboard/{slug}/?standalone=1",
                      wait_until="networkidle", timeout=120_000)
            page.wait_for_selector('[data-test="chart-grid-component"]', timeout=60_000)
            deadline = time.monotonic() + 90
            while page.locator(LOADING).count() and time.monotonic() < deadline:
                page.wait_for_timeout(500)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(1500)  # echarts animations
            errors = []
            for sel in ERROR_SELECTORS:
                for el in page.locator(sel).all():
                    errors.append(f"{sel}: {el.inner_text()[:300]}")
            shot = os.path.join(out, f"{slug}.png")
            page.screenshot(path=shot, full_page=True)
            report[slug] = {"failed": failed, "errors": errors, "screenshot": shot,
                            "charts": page.locator('[data-test="chart-grid-component"]').count(),
                            "loading": page.locator(LOADING).count(),
                            "seconds": round(time.perf_counter() - t0, 1)}
            page.close()
        browser.close()
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:]))
