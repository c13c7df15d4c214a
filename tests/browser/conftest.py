"""The browser every browser test drives: Debian's chromium, headless, via selenium.

Never a silent pass: without chromium and chromedriver these tests are
skipped with a reason that says so and how to install them (pytest -ra
prints it, and tests/conftest.py repeats it in the summary); .ci/run
installs both.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from tests.browser.browser_helpers import SCREENSHOTS_DIR, TIMEOUT


@pytest.fixture(scope="module")
def browser() -> Iterator:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        missing = (
            "browser tests did not run: chromium and chromedriver are not installed "
            "(apt-get install chromium chromium-driver)"
        )
        # make screenshots asked for pictures: a skip would leave docs/ as it was, quietly.
        if os.environ.get(SCREENSHOTS_DIR):
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=480,760"):  # fmt: skip
        options.add_argument(argument)
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(TIMEOUT)
    yield chrome
    chrome.quit()
