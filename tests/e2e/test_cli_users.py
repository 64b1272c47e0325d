"""`preservation user ...`: the console's people from a terminal, on the embedded default.

The password never appears on the command line: it comes from standard input
(``--password-stdin``) or a prompt asked twice, and the person then logs in
with it through the same ``users.log_in`` the console's form calls.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from preservation.catalog import session_scope
from preservation.cli import app
from preservation.config import Settings
from preservation.context import open_context
from preservation.errors import AuthenticationError
from preservation.users import log_in

PASSWORD = "a long enough passphrase"
NEW_PASSWORD = "another long passphrase"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("PRESERVATION_HOME", str(home))
    yield home


def invoke(*args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin)


def run(*args: str, stdin: str | None = None, code: int = 0) -> Any:
    result = invoke(*args, "--json", stdin=stdin)
    assert result.exit_code == code, (args, result.exit_code, result.output)
    return json.loads(result.stdout)


def logs_in(email: str, password: str) -> bool:
    ctx = open_context(Settings())
    try:
        with session_scope(ctx.sessions) as s:
            try:
                log_in(s, email, password)
            except AuthenticationError:
                return False
            return True
    finally:
        ctx.close()


def test_add_passwd_ls_and_disable(home: Path) -> None:
    run("tenant", "add", "museum", "--name", "The Museum")
    added = run(
        "user", "add", "--tenant", "museum", "--role", "curator", "Ann@Museum.example",
        "--password-stdin", stdin=f"{PASSWORD}\nthe rest is not read\n",
    )  # fmt: skip
    assert (added["email"], added["tenant"], added["role"]) == (
        "ann@museum.example", "museum", "curator",
    )  # fmt: skip
    assert run("user", "add", "--role", "admin", "root@safe.example", "--password-stdin",
               stdin=PASSWORD)["tenant"] is None  # fmt: skip
    assert logs_in("ann@museum.example", PASSWORD)

    listed = run("user", "ls")
    assert [u["email"] for u in listed] == ["ann@museum.example", "root@safe.example"]
    assert all("password" not in json.dumps(u) and PASSWORD not in json.dumps(u) for u in listed)
    assert [u["email"] for u in run("user", "ls", "--tenant", "museum")] == ["ann@museum.example"]
    assert PASSWORD not in (home / "catalog.sqlite").read_bytes().decode("latin-1")

    changed = run("user", "passwd", "ann@museum.example", "--password-stdin", stdin=NEW_PASSWORD)
    assert changed["email"] == "ann@museum.example"
    assert logs_in("ann@museum.example", NEW_PASSWORD)
    assert not logs_in("ann@museum.example", PASSWORD)

    disabled = run("user", "disable", "ann@museum.example")
    assert disabled["disabled_at"]
    assert not logs_in("ann@museum.example", NEW_PASSWORD)
    assert run("user", "ls", "--tenant", "museum")[0]["disabled_at"] == disabled["disabled_at"]

    # Plain output, for a person at a terminal (a table, wrapped to its width).
    shown = invoke("user", "ls")
    assert shown.exit_code == 0 and "ann@" in shown.stdout and "root@" in shown.stdout


def test_the_password_is_asked_twice_without_stdin(home: Path) -> None:
    run("tenant", "add", "museum", "--name", "The Museum")
    result = invoke(
        "user", "add", "--tenant", "museum", "--role", "consumer", "carl@museum.example",
        stdin=f"{PASSWORD}\n{PASSWORD}\n",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "carl@museum.example (consumer, tenant museum) added" in result.stdout
    assert PASSWORD not in result.output
    assert logs_in("carl@museum.example", PASSWORD)


def test_mistakes_exit_non_zero_with_a_clear_error(home: Path) -> None:
    run("tenant", "add", "museum", "--name", "The Museum")
    refused = run(
        "user", "add", "--tenant", "museum", "--role", "ruler", "ann@museum.example",
        "--password-stdin", stdin=PASSWORD, code=2,
    )  # fmt: skip
    assert refused["rule"] == "role"
    assert "'ruler' is not one of consumer, submitter, curator, admin" in refused["message"]

    plain = invoke(
        "user", "add", "--tenant", "museum", "--role", "ruler", "ann@museum.example",
        "--password-stdin", stdin=PASSWORD,
    )  # fmt: skip
    assert plain.exit_code == 2
    assert "error:" in plain.stderr and "ruler" in plain.stderr

    def add(*args: str, code: int, password: str = PASSWORD) -> dict[str, Any]:
        result: dict[str, Any] = run(
            "user", "add", *args, "--password-stdin", stdin=password, code=code
        )
        return result

    assert add("--role", "curator", "ann@museum.example", code=2)["rule"] == "user-tenant"
    assert add("--role", "admin", "--tenant", "museum", "r@safe.example", code=2)["rule"] == (
        "admin-tenant"
    )
    add("--role", "curator", "--tenant", "nowhere", "ann@museum.example", code=1)
    assert add("--role", "curator", "--tenant", "museum", "ann@museum.example", code=2,
               password="short")["rule"] == "password-length"  # fmt: skip
    add("--role", "curator", "--tenant", "museum", "ann@museum.example", code=0)
    assert (
        add("--role", "curator", "--tenant", "museum", "ANN@museum.example", code=1)["rule"]
        == "user-exists"
    )
    run("user", "passwd", "nobody@museum.example", "--password-stdin", stdin=PASSWORD, code=1)
    run("user", "disable", "nobody@museum.example", code=1)
    assert [u["email"] for u in run("user", "ls")] == ["ann@museum.example"]
