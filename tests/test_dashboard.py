"""nas dashboard: loopback by default, clear refusals, and a real server answering its API."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
from test_report import make_study

from nas.study.dashboard import is_loopback, study_url


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("127.0.0.2", True), ("0.0.0.0", False), ("::", False), ("192.168.1.5", False),
    ("example.com", False),
])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_study_url_brackets_ipv6() -> None:
    assert study_url("::1", 8080, 3) == "http://[::1]:8080/dashboard/studies/3"
    assert study_url("127.0.0.1", 80) == "http://127.0.0.1:80/dashboard"


def test_a_public_host_needs_expose(run_nas: Any) -> None:
    result = run_nas("dashboard", "--host", "0.0.0.0", "--storage", "sqlite:///absent.db")
    assert result.code == 2 and len(result.err_lines) == 1
    assert "--expose" in result.err and "authentication" in result.err


def test_a_missing_database_is_one_line_and_not_created(run_nas: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("--study", "nope"), ("--storage", "sqlite:///nope.db"), ()):
        result = run_nas("dashboard", *args)
        assert result.code == 2 and len(result.err_lines) == 1, result.err
    assert list(tmp_path.iterdir()) == []


def test_several_studies_need_a_choice(run_nas: Any, tmp_path: Path) -> None:
    db = tmp_path / "two.db"
    make_study(db, name="one", n=2)
    make_study(db, name="two", n=2)
    result = run_nas("dashboard", "--storage", f"sqlite:///{db}")
    assert result.code == 2 and "one, two" in result.err and "--study" in result.err


def test_storage_passwords_are_masked(run_nas: Any) -> None:
    result = run_nas("dashboard", "--study", "s",
                     "--storage", "postgresql://nas:s3cret@127.0.0.1:9/nas")
    assert result.code == 2 and len(result.err_lines) == 1
    assert "s3cret" not in result.err + result.out and "nas:***@" in result.err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, deadline: float) -> Any:
    """GET a JSON document, retrying until the server answers or the deadline passes."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except (urllib.error.URLError, ConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The first stdout line of a process, or '' if none comes in time."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()),  # type: ignore[union-attr]
                              daemon=True)
    reader.start()
    reader.join(timeout)
    return lines[0] if lines else ""


def test_dashboard_serves_the_study_and_its_trials(tmp_path: Path) -> None:
    db = tmp_path / "synth.db"
    study = make_study(db)
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "nas", "dashboard", "--study", "synth",
         "--storage", f"sqlite:///{db}", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = first_line(process, 60)
        assert f"http://127.0.0.1:{port}/dashboard/studies/" in line, line or "no URL printed"
        deadline = time.monotonic() + 30
        studies = get_json(f"http://127.0.0.1:{port}/api/studies", deadline)[
            "study_summaries"]
        assert [s["study_name"] for s in studies] == ["synth"]
        detail = get_json(f"http://127.0.0.1:{port}/api/studies/{studies[0]['study_id']}",
                          deadline)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert [t["number"] for t in detail["trials"]] == list(range(14))
    assert {t["number"] for t in detail["best_trials"]} == {t.number for t in study.best_trials}
    assert len(detail["best_trials"]) >= 2 and detail["directions"] == ["maximize", "minimize"]
    keys = {a["key"] for a in detail["trials"][0]["user_attrs"]}
    assert {"spec", "val_accuracy", "params"} <= keys
    assert optuna.load_study(study_name="synth", storage=f"sqlite:///{db}").trials  # unharmed
