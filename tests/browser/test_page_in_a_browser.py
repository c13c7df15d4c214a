"""The page for people and a browser caller, in Debian's chromium (headless) on the local stack.

The ``browser`` fixture (conftest.py) skips, saying so, without chromium
and chromedriver.
"""

from __future__ import annotations

import http.server
import threading
from pathlib import Path

from local.stack import local_stack
from tests.browser.browser_helpers import TIMEOUT, RunInBackground

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "workflow" / "example.yaml"


def test_a_person_approves_on_the_page(browser, tmp_path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    with local_stack() as stack:
        run = RunInBackground(stack, EXAMPLE, {"subject": "Deploy <1.4> \u00e0 prod"})
        page = run.urls.get(timeout=TIMEOUT)

        browser.get(page)
        assert browser.title == "Approve - Deploy <1.4> \u00e0 prod"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Approve - Deploy <1.4> \u00e0 prod"
        buttons = [b.text for b in browser.find_elements(By.CSS_SELECTOR, "button[name=choice]")]
        assert buttons == ["Approve", "Reject"]
        browser.save_screenshot(str(tmp_path / "approval-page.png"))

        browser.find_element(By.ID, "comment").send_keys("Looks good \u2713")
        browser.find_element(By.CSS_SELECTOR, "button[value=approve]").click()
        WebDriverWait(browser, TIMEOUT).until(
            expected_conditions.text_to_be_present_in_element(
                (By.TAG_NAME, "main"), "Your answer was recorded: Approve."
            )
        )
        result = run.finished()
        assert result.error is None, result.error
        assert result.result["decision"] == "approved"
        assert result.result["callback"]["value"] == "approve"
        assert result.result["callback"]["body"]["comment"] == "Looks good \u2713"

        browser.get(page)  # later: the workflow has consumed it
        assert "Already answered: Approve" in browser.find_element(By.TAG_NAME, "main").text


def test_a_page_on_an_allowed_origin_calls_back_from_the_browser(browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    app = _serve_app()
    origin = f"http://127.0.0.1:{app.server_address[1]}"
    try:
        with local_stack(allowed_origins=(origin,)) as stack:
            workflow = REPO_ROOT / "bench" / "wait" / "driver.yaml"
            run = RunInBackground(stack, workflow, {"step": "from-browser"})
            url = run.urls.get(timeout=TIMEOUT)

            browser.get(f"{origin}/?callback=" + _quote(url))
            WebDriverWait(browser, TIMEOUT).until(
                lambda b: b.find_element(By.ID, "status").text not in ("", "sending")
            )
            assert browser.find_element(By.ID, "status").text == "200"
            result = run.finished()
            assert result.error is None, result.error
            assert result.result["body"] == {"from": "browser"}
            assert result.result["headers"].get("content-type") == "application/json"
    finally:
        app.shutdown()
        app.server_close()


APP_PAGE = b"""<!doctype html><html><body><p id="status">sending</p><script>
const url = new URLSearchParams(location.search).get("callback");
fetch(url, {method: "POST", headers: {"Content-Type": "application/json"},
            body: JSON.stringify({from: "browser"})})
  .then(r => { document.getElementById("status").textContent = String(r.status); })
  .catch(e => { document.getElementById("status").textContent = "blocked: " + e; });
</script></body></html>"""


def _serve_app() -> http.server.ThreadingHTTPServer:
    """A web app on another loopback origin: its page POSTs a callback with fetch."""

    class App(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(APP_PAGE)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _quote(url: str) -> str:
    from urllib.parse import quote

    return quote(url, safe="")
