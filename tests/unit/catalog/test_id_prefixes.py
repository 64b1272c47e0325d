"""Ids by unique prefix, the form ``status`` prints: on both catalogue backends."""

from __future__ import annotations

import pytest

from preservation.catalog import service, session_scope
from preservation.errors import AmbiguousIdError, InvalidRequestError, NotFoundError

TWINS = ("abcdef12-0000-4000-8000-000000000001", "abcdef12-0000-4000-8000-000000000002")


@pytest.fixture
def twins(session_factory):  # type: ignore[no-untyped-def]
    with session_scope(session_factory) as s:
        for i, sip_id in enumerate(TWINS):
            service.create_sip(
                s, tenant_id="museum", name=f"bag-{i}", source_path=f"/in/{i}", sip_id=sip_id
            )
    return session_factory


def test_a_prefix_shared_by_two_sips_is_refused_naming_both(twins) -> None:  # type: ignore[no-untyped-def]
    with session_scope(twins) as s, pytest.raises(AmbiguousIdError) as caught:
        service.resolve_sip_id(s, "abcdef12")
    assert caught.value.context["rule"] == "id-prefix"
    assert all(sip_id in caught.value.message for sip_id in TWINS)


def test_enough_of_the_id_to_tell_them_apart_resolves(twins) -> None:  # type: ignore[no-untyped-def]
    with session_scope(twins) as s:
        assert service.resolve_sip_id(s, TWINS[1][:-1].upper() + "2") == TWINS[1]
        assert service.resolve_sip_id(s, TWINS[0]) == TWINS[0]


def test_like_wildcards_in_a_prefix_match_only_themselves(twins) -> None:  # type: ignore[no-untyped-def]
    with session_scope(twins) as s:
        with pytest.raises(NotFoundError):
            service.resolve_sip_id(s, "abcdef1_")
        with pytest.raises(NotFoundError):
            service.resolve_sip_id(s, "abcdef%%")
        with pytest.raises(InvalidRequestError):
            service.resolve_sip_id(s, "abcdef1")  # seven characters: too short
