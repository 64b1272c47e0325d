"""API tokens: `token create`, `token ls`, `token revoke`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from preservation.cli.terminal import err, in_context, out

app = typer.Typer(help="Bearer tokens for the REST API.", no_args_is_help=True)


@app.command("create")
def create(
    role: Annotated[
        str, typer.Option("--role", help="consumer, submitter, curator or admin")
    ],
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="The token's tenant (none for admin)")
    ] = None,
    label: Annotated[str, typer.Option("--label", help="Who or what uses it")] = "",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Make a token and print it once: only its hash is kept."""
    from preservation.catalog import session_scope
    from preservation.tokens import create_token

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            made = create_token(s, role=role, tenant_id=tenant, label=label)
            return {
                "id": made.token.id,
                "tenant": made.token.tenant_id,
                "role": made.token.role.value,
                "label": made.token.label,
                "token": made.secret,
            }

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
        return
    out.print(row["token"], highlight=False, soft_wrap=True)
    err.print(
        f"token {row['id']} ({row['role']}, tenant {row['tenant'] or 'every tenant'}): "
        "shown once, kept only as a hash; send it as 'Authorization: Bearer <token>'",
        highlight=False,
    )


@app.command("ls")
def ls(
    tenant: Annotated[str | None, typer.Option("--tenant")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Tokens (never their secrets): role, tenant, label, last use, revocation."""
    from preservation.catalog import session_scope
    from preservation.tokens import list_tokens

    def work(ctx: Any) -> list[dict[str, Any]]:
        with session_scope(ctx.sessions) as s:
            return list_tokens(s, tenant_id=tenant)

    rows = in_context(as_json, work)
    if as_json:
        out.print_json(data=rows)
        return
    table = Table("id", "tenant", "role", "label", "last used", "revoked")
    for t in rows:
        table.add_row(
            t["id"], t["tenant"] or "*", t["role"], t["label"], t["last_used_at"] or "-",
            t["revoked_at"] or "",
        )
    out.print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(metavar="TOKEN_ID")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Revoke a token: the next request with it is refused."""
    from preservation.catalog import session_scope
    from preservation.tokens import revoke_token

    def work(ctx: Any) -> dict[str, Any]:
        with session_scope(ctx.sessions) as s:
            return revoke_token(s, token_id)

    row = in_context(as_json, work)
    if as_json:
        out.print_json(data=row)
    else:
        out.print(f"token {row['id']} revoked at {row['revoked_at']}", highlight=False)
