"""Console users: `user add`, `user passwd`, `user ls`, `user disable`.

A password is never an argument (it would land in shell history and in
``ps``): it is asked for twice on a terminal, or read from the first line of
standard input with ``--password-stdin`` for scripts.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import in_context, out

app = typer.Typer(help="People who log in to the web console.", no_args_is_help=True)

PasswordStdin = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from standard input's first line"),
]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@app.command("add")
def add(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    role: Annotated[str, typer.Option("--role", help="consumer, submitter, curator or admin")],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The user's tenant (none for admin)")
    ] = None,
    password_stdin: PasswordStdin = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Add a user; the password is kept only as an argon2id hash."""
    from preservation.catalog import session_scope
    from preservation.users import add_user

    password = _password(password_stdin)

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            return add_user(s, email=email, role=role, password=password, tenant_id=tenant)

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
    else:
        out.print(
            f"user {row['email']} ({row['role']}, tenant {row['tenant'] or 'every tenant'}) added",
            highlight=False,
        )


@app.command("passwd")
def passwd(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    password_stdin: PasswordStdin = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Set a new password: it ends the user's open sessions and lifts a lockout."""
    from preservation.catalog import session_scope
    from preservation.users import set_password

    password = _password(password_stdin)

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            return set_password(s, email, password)

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
    else:
        out.print(f"password of {row['email']} changed; open sessions ended", highlight=False)


@app.command("ls")
def ls(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Users: e-mail, tenant, role, last login, lock and disable state."""
    from preservation.catalog import session_scope
    from preservation.users import list_users

    def work(ctx: Any) -> list[dict[str, Any]]:
        with session_scope(ctx.sessions) as s:
            return list_users(s, tenant_id=tenant)

    rows = in_context(as_json, work)
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("e-mail", "tenant", "role", "last login", "locked until", "disabled")
    for u in rows:
        table.add_row(
            u["email"],
            u["tenant"] or "*",
            u["role"],
            u["last_login_at"] or "-",
            u["locked_until"] or "",
            u["disabled_at"] or "",
        )
    out.print(table)


@app.command("disable")
def disable(
    email: Annotated[str, typer.Argument(metavar="EMAIL")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Stop a user logging in and end their sessions; the account stays for the history."""
    from preservation.catalog import session_scope
    from preservation.users import disable_user

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            return disable_user(s, email)

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
    else:
        out.print(f"user {row['email']} disabled at {row['disabled_at']}", highlight=False)
