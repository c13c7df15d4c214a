"""Fixtures every test folder shares: one Firestore emulator per session.

Tests are isolated by database, not by emulator: each test that asks for
`firestore_database` gets a fresh named database id (named databases exist in
the emulator as soon as they are written to), so no test sees another's data.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import firestore

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests import the local stack as `local.*` (pytest runs with importlib mode,
# which does not put the repository root on sys.path).
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from local.environment import environment  # noqa: E402
from local.firestore_emulator import ENV_HOST, firestore_emulator  # noqa: E402

TEST_PROJECT = "demo-workflow-callbacks"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def firestore_emulator_host() -> Iterator[str]:
    """The emulator's host:port, also set as FIRESTORE_EMULATOR_HOST for the session.

    Reuses FIRESTORE_EMULATOR_HOST if it is already set; otherwise starts the
    npm emulator once and stops it at the end of the session.
    """
    with firestore_emulator() as host, environment({ENV_HOST: host}):
        yield host


@pytest.fixture(scope="session")
def gcp_project() -> str:
    """The project id every test uses ("demo-" ids never reach real Google Cloud)."""
    return TEST_PROJECT


@pytest.fixture
def firestore_database(firestore_emulator_host: str) -> str:
    """A database id no other test uses."""
    return f"test-{uuid.uuid4().hex[:16]}"


@pytest.fixture
def firestore_client(
    firestore_emulator_host: str, gcp_project: str, firestore_database: str
) -> Iterator[firestore.Client]:
    """A Firestore client on this test's own database in the emulator."""
    client = firestore.Client(
        project=gcp_project, database=firestore_database, credentials=AnonymousCredentials()
    )
    yield client
    client.close()


BROWSER_SKIP = "browser tests did not run"


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say it in so many words when the browser tests were skipped: never a quiet pass."""
    skipped = terminalreporter.stats.get("skipped", [])
    if any(BROWSER_SKIP in str(getattr(report, "longrepr", "")) for report in skipped):
        terminalreporter.write_line(
            "THE BROWSER TESTS DID NOT RUN: install chromium and chromedriver "
            "(apt-get install chromium chromium-driver), then run make test again.",
            red=True,
            bold=True,
        )
