"""Console users (``preservation/users.py``): who may exist, lockout, and when a session ends.

On both catalogue backends (``session_factory``). The clock is passed in
(``now=``), so the lock's fifteen minutes pass without waiting, and hashing
uses argon2id at its cheapest: these tests are about the rules, and the
production cost (half a second a hash on a busy CI machine) would make them
minutes long.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from preservation import users
from preservation.catalog import service, session_scope
from preservation.catalog.models import ConsoleUser, Role, utcnow
from preservation.errors import (
    AuthenticationError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
)
from preservation.users import (
    LOCK_SECONDS,
    MAX_FAILURES,
    MIN_PASSWORD_LENGTH,
    add_user,
    disable_user,
    list_users,
    log_in,
    set_password,
    user_for_session,
)

PASSWORD = "correct horse battery"
Factory = sessionmaker[Session]


@pytest.fixture(autouse=True)
def cheap_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        users, "_hasher", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1)
    )


@pytest.fixture
def db(session_factory: Factory) -> Factory:
    with session_scope(session_factory) as s:
        service.ensure_tenant(s, "museum", "The Museum")
        service.ensure_tenant(s, "library", "The Library")
    return session_factory


def add(db: Factory, email: str, role: str = "curator", tenant: str | None = "museum") -> str:
    with session_scope(db) as s:
        return str(add_user(s, email=email, role=role, password=PASSWORD, tenant_id=tenant)["id"])


def attempt(db: Factory, email: str, password: str, **kw: object) -> str | None:
    """Log in; the refusal's rule, or None. The failure count is committed, as the page does."""
    with session_scope(db) as s:
        try:
            log_in(s, email, password, **kw)  # type: ignore[arg-type]
        except AuthenticationError as err:
            return str(err.context.get("rule"))
    return None


def epoch_of(db: Factory, email: str) -> tuple[str, int]:
    with session_scope(db) as s:
        user = s.scalar(select(ConsoleUser).where(ConsoleUser.email == email))
        assert user is not None
        return user.id, user.session_epoch


# -- who may exist ------------------------------------------------------------------------


def test_an_admin_has_no_tenant_and_everyone_else_an_existing_one(db: Factory) -> None:
    with session_scope(db) as s:
        admin = add_user(
            s, email="root@safe.example", role="admin", password=PASSWORD, tenant_id=None
        )
        assert admin["tenant"] is None and admin["role"] == "admin"
        with pytest.raises(InvalidRequestError) as err:
            add_user(
                s,
                email="root2@safe.example",
                role=Role.ADMIN,
                password=PASSWORD,
                tenant_id="museum",
            )
        assert err.value.context["rule"] == "admin-tenant"
        for role in ("consumer", "submitter", "curator"):
            with pytest.raises(InvalidRequestError) as err:
                add_user(
                    s, email=f"{role}@museum.example", role=role, password=PASSWORD, tenant_id=None
                )
            assert err.value.context["rule"] == "user-tenant"
        with pytest.raises(NotFoundError):
            add_user(
                s,
                email="ann@nowhere.example",
                role="curator",
                password=PASSWORD,
                tenant_id="nowhere",
            )
        with pytest.raises(InvalidRequestError) as err:
            add_user(
                s, email="ann@museum.example", role="ruler", password=PASSWORD, tenant_id="museum"
            )
        assert err.value.context["rule"] == "role"
        assert [u["email"] for u in list_users(s)] == ["root@safe.example"]


def test_an_email_is_normalised_checked_and_unique(db: Factory) -> None:
    with session_scope(db) as s:
        row = add_user(
            s,
            email="  Ann.Peeters@Museum.Example ",
            role="curator",
            password=PASSWORD,
            tenant_id="museum",
        )
        assert row["email"] == "ann.peeters@museum.example"
        # The same address in other letters, even in another tenant, is the same person.
        with pytest.raises(ConflictError):
            add_user(
                s,
                email="ANN.PEETERS@museum.example",
                role="consumer",
                password=PASSWORD,
                tenant_id="library",
            )
        for bad in ("ann", "ann@museum", "a b@museum.example", ""):
            with pytest.raises(InvalidRequestError) as err:
                add_user(s, email=bad, role="curator", password=PASSWORD, tenant_id="museum")
            assert err.value.context["rule"] == "email"
    # A login may be typed in any letters too.
    assert attempt(db, " ANN.Peeters@museum.example", PASSWORD) is None


def test_a_password_is_long_enough_and_kept_as_an_argon2id_hash(db: Factory) -> None:
    with session_scope(db) as s:
        with pytest.raises(InvalidRequestError) as err:
            add_user(
                s,
                email="ann@museum.example",
                role="curator",
                password="x" * (MIN_PASSWORD_LENGTH - 1),
                tenant_id="museum",
            )
        assert err.value.context["rule"] == "password-length"
        add_user(
            s,
            email="ann@museum.example",
            role="curator",
            password="x" * MIN_PASSWORD_LENGTH,
            tenant_id="museum",
        )
        user = s.scalar(select(ConsoleUser))
        assert user is not None and user.password_hash.startswith("$argon2id$")
        with pytest.raises(InvalidRequestError):
            set_password(s, "ann@museum.example", "too short")


def test_users_are_listed_and_changed_within_a_tenant(db: Factory) -> None:
    add(db, "ann@museum.example")
    add(db, "bob@library.example", tenant="library")
    add(db, "root@safe.example", role="admin", tenant=None)
    with session_scope(db) as s:
        assert [u["email"] for u in list_users(s, tenant_id="museum")] == ["ann@museum.example"]
        assert len(list_users(s)) == 3
        for change in (
            lambda: set_password(s, "bob@library.example", "another long one", tenant_id="museum"),
            lambda: disable_user(s, "bob@library.example", tenant_id="museum"),
            lambda: disable_user(s, "root@safe.example", tenant_id="museum"),
            lambda: disable_user(s, "nobody@museum.example"),
        ):
            with pytest.raises(NotFoundError):
                change()


# -- logging in ---------------------------------------------------------------------------


def test_a_login_locks_after_max_failures_and_unlocks_after_lock_seconds(db: Factory) -> None:
    add(db, "ann@museum.example")
    t0 = utcnow()
    # Failures short of the limit are forgotten by a good login.
    assert [
        attempt(db, "ann@museum.example", "wrong", now=t0) for _ in range(MAX_FAILURES - 1)
    ] == ["login"] * (MAX_FAILURES - 1)
    assert attempt(db, "ann@museum.example", PASSWORD, now=t0) is None
    assert [
        attempt(db, "ann@museum.example", "wrong", now=t0) for _ in range(MAX_FAILURES - 1)
    ] == ["login"] * (MAX_FAILURES - 1)
    # The last failure in a row locks: even the right password is refused without a look.
    assert attempt(db, "ann@museum.example", "wrong", now=t0) == "login"
    assert attempt(db, "ann@museum.example", PASSWORD, now=t0) == "login-locked"
    just_before = t0 + timedelta(seconds=LOCK_SECONDS - 1)
    assert attempt(db, "ann@museum.example", PASSWORD, now=just_before) == "login-locked"
    with session_scope(db) as s:
        assert list_users(s)[0]["locked_until"] is not None
    after = t0 + timedelta(seconds=LOCK_SECONDS + 1)
    assert attempt(db, "ann@museum.example", PASSWORD, now=after) is None
    with session_scope(db) as s:
        user = s.scalar(select(ConsoleUser))
        assert user is not None
        assert user.failed_logins == 0 and user.locked_until is None
        assert user.last_login_at is not None


def test_a_new_password_lifts_a_lock(db: Factory) -> None:
    add(db, "ann@museum.example")
    t0 = utcnow()
    for _ in range(MAX_FAILURES):
        attempt(db, "ann@museum.example", "wrong", now=t0)
    assert attempt(db, "ann@museum.example", PASSWORD, now=t0) == "login-locked"
    with session_scope(db) as s:
        set_password(s, "ann@museum.example", "another long passphrase")
    assert attempt(db, "ann@museum.example", "another long passphrase", now=t0) is None
    assert attempt(db, "ann@museum.example", PASSWORD, now=t0) == "login"


def test_unknown_and_disabled_users_are_refused_alike(db: Factory) -> None:
    add(db, "ann@museum.example")
    assert attempt(db, "nobody@museum.example", PASSWORD) == "login"
    with session_scope(db) as s:
        assert disable_user(s, "ann@museum.example")["disabled_at"] is not None
    with session_scope(db) as s:  # twice is harmless: the sessions end once
        assert disable_user(s, "ann@museum.example")["disabled_at"] is not None
    assert epoch_of(db, "ann@museum.example")[1] == 2
    assert attempt(db, "ann@museum.example", PASSWORD) == "login"


# -- sessions -----------------------------------------------------------------------------


def test_user_for_session_is_the_principal_until_the_session_is_ended(db: Factory) -> None:
    user_id = add(db, "ann@museum.example")
    with session_scope(db) as s:
        result = log_in(s, "ann@museum.example", PASSWORD)
        assert result.user_id == user_id and result.epoch == 1
        who = user_for_session(s, user_id, result.epoch)
        assert who == result.principal
        assert who is not None
        assert (who.token_id, who.tenant_id, who.role, who.label) == (
            f"user:{user_id}",
            "museum",
            Role.CURATOR,
            "ann@museum.example",
        )
        assert user_for_session(s, "no-such-user", 1) is None
        assert user_for_session(s, user_id, 2) is None

    # A new password bumps the epoch: every cookie made before is dead.
    with session_scope(db) as s:
        set_password(s, "ann@museum.example", "another long passphrase")
    assert epoch_of(db, "ann@museum.example") == (user_id, 2)
    with session_scope(db) as s:
        assert user_for_session(s, user_id, 1) is None
        assert user_for_session(s, user_id, 2) is not None

    # Disabling ends them too, and a disabled user has no session at any epoch.
    with session_scope(db) as s:
        disable_user(s, "ann@museum.example")
    assert epoch_of(db, "ann@museum.example") == (user_id, 3)
    with session_scope(db) as s:
        assert all(user_for_session(s, user_id, e) is None for e in (1, 2, 3))
