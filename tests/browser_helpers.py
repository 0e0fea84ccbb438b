"""What every browser test shares: Debian's Chromium, the page recorders and the "clean page" checks.

Playwright for Python drives /usr/bin/chromium through `executable_path` (never
`playwright install`).  A clean page fetched nothing from another origin, had
no Content-Security-Policy violation (neither the `securitypolicyviolation`
event nor a console report), and axe-core finds no serious or critical
accessibility violation on it; its screenshot is saved to tests/artifacts/.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, sync_playwright

ARTIFACTS = Path(__file__).parent / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

#: Runs in the page before its own scripts: collects CSP violations.
CSP_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", e => window.__csp.push(e.violatedDirective + " " + e.blockedURI));
"""


@contextmanager
def chromium() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def record(page: Page) -> Page:
    """Record every request, main-frame navigation and console CSP report of `page` (as attributes)."""
    page.add_init_script(CSP_WATCH)
    page.requests, page.navigations, page.console_csp = [], [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("framenavigated", lambda f: f == page.main_frame and page.navigations.append(f.url))
    page.on("console", lambda m: "Content Security Policy" in m.text and page.console_csp.append(m.text))
    return page


def assert_clean(page: Page, origin: str, name: str) -> None:
    """Same-origin only, no CSP violation, no serious/critical axe finding; save a screenshot as `name`.png."""
    foreign = [u for u in page.requests if not u.startswith(origin + "/")]
    assert foreign == [], f"requests to another origin: {foreign}"
    assert page.evaluate("window.__csp") == [] and page.console_csp == []
    results = Axe().run(page)
    bad = [v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    assert bad == [], results.generate_report()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
