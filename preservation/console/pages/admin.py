"""The admin page: tenants, users and tokens, over what `preservation tenant/user/token` call.

A curator looks after the consumers and submitters of their own tenant; an
admin after everyone in every tenant, and adds tenants. Everything is scoped
by the viewer's tenant the way the service functions scope a token
(``tenant_id=None`` only for an admin), so another tenant's user or token is
the same 404 page as one that does not exist.

Curator and admin accounts are an admin's alone to add, reset and disable
(``users.may_manage``): a disposal needs a second curator, and a curator who
could make another curator account, or set a peer's password, could approve
their own. A curator trying it gets the 403 page saying so. Nobody disables
their own account (a 400, said on the page).

Tokens are an admin's, as in the API (``routers/tokens.py``): a program's
token reaches its tenant's holdings without a person behind it, so a curator
neither lists, makes nor revokes them.

Every change is a POST with the CSRF token, answered by a redirect back to
the page with a notice (POST/redirect/GET), except a new token, whose secret
is on the answer to the POST itself and nowhere else: a redirect would have
to carry it in a URL or a cookie.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Form, Path, Request
from starlette.responses import RedirectResponse, Response

from preservation import tenants, tokens, users
from preservation.api.deps import Db
from preservation.api.problems import STATUS
from preservation.catalog.models import Role
from preservation.console import render
from preservation.console.deps import needs
from preservation.console.deps import router as console_router
from preservation.console.i18n import gettext as _
from preservation.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    PreservationError,
)
from preservation.tokens import Principal

router = console_router(prefix="/admin")

Curator = Annotated[Principal, Depends(needs(Role.CURATOR))]
Admin = Annotated[Principal, Depends(needs(Role.ADMIN))]
HERE = "/console/admin"


def _notice(done: str | None, subject: str | None, known: dict[str, set[str]]) -> str | None:
    """The notice after a redirect; the subject is named only if it is on the page anyway.

    The query string is anyone's to write, so a link cannot make the page say
    "user mallory@... added" about someone who is not there.
    """
    if subject is not None and subject not in known.get(done or "", set()):
        subject = None
    if done == "tenant-added":
        return _("Tenant %(id)s saved.") % {"id": subject} if subject else _("Tenant saved.")
    if done == "user-added":
        return _("User %(email)s added.") % {"email": subject} if subject else _("User added.")
    if done == "password-set":
        return (
            _("New password set for %(email)s; their open sessions have ended.")
            % {"email": subject}
            if subject
            else _("New password set; the user's open sessions have ended.")
        )
    if done == "user-disabled":
        return (
            _("%(email)s can no longer log in; their open sessions have ended.")
            % {"email": subject}
            if subject
            else _("The user can no longer log in.")
        )
    if done == "token-revoked":
        return _("Token revoked: programs using it are refused from now on.")
    return None


def _grantable(viewer: Principal) -> list[Role]:
    """The roles the viewer may give: an admin any, a curator those below curator."""
    return [r for r in Role if users.may_manage(viewer.role, r)]


def _admins_only() -> str:
    return _(
        "Curator and administrator accounts are managed by administrators only: "
        "ask an administrator to add, reset or disable them."
    )


def _reason(err: PreservationError) -> str:
    """Why nothing changed, in the viewer's language where the rule is ours to explain."""
    if err.context.get("rule") == "user-manager":
        return _admins_only()
    if err.context.get("rule") == "disable-self":
        return _("You cannot disable your own account; another administrator can.")
    return err.message


def _role_names() -> dict[str, str]:
    return {
        Role.CONSUMER.value: _("Consumer"),
        Role.SUBMITTER.value: _("Submitter"),
        Role.CURATOR.value: _("Curator"),
        Role.ADMIN.value: _("Administrator"),
    }


def _role(viewer: Principal, value: str) -> Role:
    try:
        role = Role(value)
    except ValueError as exc:
        raise InvalidRequestError(
            f"role {value!r} is not one of {', '.join(r.value for r in Role)}", rule="role"
        ) from exc
    if role not in _grantable(viewer):
        raise ForbiddenError(_admins_only(), rule="user-manager", role=role.value)
    return role


def _tenant(viewer: Principal, value: str) -> str | None:
    """A curator's users and tokens are of the curator's tenant, whatever the form says."""
    if not viewer.is_admin:
        return viewer.tenant_id
    return value.strip() or None


def _user_id(viewer: Principal) -> str:
    return viewer.token_id.removeprefix("user:")


def _page(
    request: Request,
    db: Db,
    viewer: Principal,
    *,
    notices: list[tuple[str, str]] | None = None,
    created: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    tenant = viewer.tenant_id
    listed_users = users.list_users(db, tenant_id=tenant)
    # Tokens are an admin's, as in the API (``routers/tokens.py``): programs get into
    # every tenant's holdings through them, so people of one tenant do not mint them.
    listed_tokens = tokens.list_tokens(db) if viewer.is_admin else []
    listed_tenants = tenants.list_tenants(db) if viewer.is_admin else []
    # The accounts the viewer may reset and disable: the page offers no other.
    manageable = [
        u
        for u in listed_users
        if not u["disabled_at"] and users.may_manage(viewer.role, Role(u["role"]))
    ]
    if notices is None:
        known = {
            "tenant-added": {t["id"] for t in listed_tenants},
            "user-added": {u["email"] for u in listed_users},
            "password-set": {u["email"] for u in listed_users},
            "user-disabled": {u["email"] for u in listed_users},
        }
        text = _notice(request.query_params.get("done"), request.query_params.get("subject"), known)
        notices = [("ok", text)] if text else []
    return render.page(
        request,
        "admin.html",
        {
            "section": "admin",
            "notices": notices,
            "tenants": listed_tenants,
            "users": listed_users,
            "active_users": manageable,
            "may_disable": {u["email"] for u in manageable if u["id"] != _user_id(viewer)},
            "tokens": listed_tokens,
            "roles": [r.value for r in _grantable(viewer)],
            "role_names": _role_names(),
            "min_password": users.MIN_PASSWORD_LENGTH,
            "created": created,
            "form": form or {},
        },
        status=status,
    )


def _done(code: str, subject: str = "") -> Response:
    query = urlencode({"done": code, **({"subject": subject} if subject else {})})
    return RedirectResponse(f"{HERE}?{query}", status_code=303)


def _refused(
    request: Request, db: Db, viewer: Principal, err: PreservationError, form: dict[str, str]
) -> Response:
    """The page again with what was wrong, and the form as it was sent (never a password).

    Only mistakes in what was typed come back to the form; another tenant's
    user (404) or a role above one's own (403) are error pages.
    """
    db.rollback()
    status = next((code for cls, code, _t in STATUS if isinstance(err, cls)), 400)
    message = _("Nothing was changed: %(reason)s") % {"reason": _reason(err)}
    return _page(request, db, viewer, notices=[("error", message)], form=form, status=status)


Mistake = (InvalidRequestError, ConflictError)


@router.get("")
def admin_page(request: Request, db: Db, viewer: Curator) -> Response:
    return _page(request, db, viewer)


@router.post("/tenants")
def add_tenant(
    request: Request,
    db: Db,
    viewer: Admin,
    tenant_id: Annotated[str, Form(alias="id", max_length=63)],
    name: Annotated[str, Form(max_length=255)],
) -> Response:
    try:
        tenants.add_tenant(db, tenant_id.strip(), name)
    except Mistake as err:
        return _refused(request, db, viewer, err, {"tenant_id": tenant_id, "tenant_name": name})
    return _done("tenant-added", tenant_id.strip())


@router.post("/users")
def add_user(
    request: Request,
    db: Db,
    viewer: Curator,
    email: Annotated[str, Form(max_length=320)],
    role: Annotated[str, Form(max_length=32)],
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH + 1)],
    tenant: Annotated[str, Form(max_length=63)] = "",
) -> Response:
    try:
        row = users.add_user(
            db,
            email=email,
            role=_role(viewer, role),
            password=password,
            tenant_id=_tenant(viewer, tenant),
        )
    except Mistake as err:
        form = {"user_email": email, "user_role": role, "user_tenant": tenant}
        return _refused(request, db, viewer, err, form)
    return _done("user-added", row["email"])


@router.post("/users/password")
def set_password(
    request: Request,
    db: Db,
    viewer: Curator,
    email: Annotated[str, Form(max_length=320)],
    password: Annotated[str, Form(max_length=users.MAX_PASSWORD_LENGTH + 1)],
) -> Response:
    try:
        row = users.set_password(db, email, password, tenant_id=viewer.tenant_id, by=viewer)
    except Mistake as err:
        return _refused(request, db, viewer, err, {"password_email": email})
    except ForbiddenError as err:
        raise ForbiddenError(_reason(err), **err.context) from err
    return _done("password-set", row["email"])


@router.post("/users/disable")
def disable_user(
    request: Request, db: Db, viewer: Curator, email: Annotated[str, Form(max_length=320)]
) -> Response:
    try:
        row = users.disable_user(db, email, tenant_id=viewer.tenant_id, by=viewer)
    except Mistake as err:
        return _refused(request, db, viewer, err, {})
    except ForbiddenError as err:
        raise ForbiddenError(_reason(err), **err.context) from err
    return _done("user-disabled", row["email"])


@router.post("/tokens")
def create_token(
    request: Request,
    db: Db,
    viewer: Admin,
    role: Annotated[str, Form(max_length=32)],
    tenant: Annotated[str, Form(max_length=63)] = "",
    label: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """The new token's secret is on this answer and nowhere else, ever."""
    try:
        made = tokens.create_token(
            db, role=_role(viewer, role), tenant_id=_tenant(viewer, tenant), label=label
        )
    except Mistake as err:
        form = {"token_role": role, "token_tenant": tenant, "token_label": label}
        return _refused(request, db, viewer, err, form)
    created = {"id": made.token.id, "secret": made.secret, "label": made.token.label}
    notice = _("Token made. Copy it now: it is shown this once and cannot be shown again.")
    return _page(request, db, viewer, notices=[("ok", notice)], created=created, status=201)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    request: Request,
    db: Db,
    viewer: Admin,
    token_id: Annotated[str, Path(max_length=64)],
) -> Response:
    tokens.revoke_token(db, token_id, tenant_id=viewer.tenant_id)
    return _done("token-revoked")
