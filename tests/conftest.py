"""Session fixtures shared by the test suite."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from msi_tui.broker.local import LocalBroker, free_port


def pytest_report_header() -> str:
    """The Java the session's broker runs on, so a CI log shows which runtime was tested."""
    from msi_tui.broker.java import find_java

    runtime = find_java()
    return f"local Kafka broker on {runtime.describe() if runtime else 'no Java found'}"


@pytest.fixture(scope="session", autouse=True)
def _isolated_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep broker data, logs and registries of the whole session in a temp dir.

    `MSI_TUI_CACHE_DIR` is left alone on purpose: the Kafka jars stay cached across runs.
    """
    state = tmp_path_factory.mktemp("state")
    patch = pytest.MonkeyPatch()
    patch.setenv("MSI_TUI_STATE_DIR", str(state))
    yield state
    patch.undo()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real Kafka broker, one per session.

    `$MSI_TUI_TEST_BOOTSTRAP` points the tests at an existing broker; otherwise a
    `LocalBroker` is started on free ports in a temp home and removed afterwards.
    """
    external = os.environ.get("MSI_TUI_TEST_BOOTSTRAP")
    if external:
        yield external
        _delete_session_topics(external)
        return
    home = tmp_path_factory.mktemp("kafka")
    port = free_port()
    controller_port = free_port()
    while controller_port == port:  # two kernel picks can coincide
        controller_port = free_port()
    broker = LocalBroker(home, port=port, controller_port=controller_port)
    bootstrap = broker.start()
    try:
        yield bootstrap
    finally:
        broker.stop()
        shutil.rmtree(home, ignore_errors=True)


def _delete_session_topics(bootstrap: str) -> None:
    """A standing broker keeps what the session wrote unless told: its disk would fill."""
    from confluent_kafka.admin import AdminClient

    from tests.helpers import SESSION_TOPICS

    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = set(admin.list_topics(timeout=30).topics)
    names = [t for base in SESSION_TOPICS for t in (base, f"{base}.receipts") if t in existing]
    if not names:
        return
    for future in admin.delete_topics(names, operation_timeout=30).values():
        try:
            future.result(60)
        except Exception:  # (best effort: the broker may be gone already)
            pass


@pytest.fixture
def topic() -> str:
    """A fresh topic name for one test, so tests never see each other's records."""
    from tests.helpers import new_topic

    return new_topic()
