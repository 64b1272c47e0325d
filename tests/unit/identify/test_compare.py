"""Lining up runs file by file (pure: built from hand-made results)."""

from __future__ import annotations

from pathlib import Path

from preservation.identify import Identification, compare, summarise


def _result(path: str, engine: str, *puids: str) -> Identification:
    return Identification(
        path=Path(path),
        puids=puids,
        format_name=None,
        format_version=None,
        mime=None,
        basis="signature" if puids else "none",
        engine=engine,
        engine_version="1",
        signature_release="r",
    )


def test_rows_follow_first_appearance_and_mark_gaps() -> None:
    fido = [
        _result("a", "fido", "fmt/11"),
        _result("b", "fido", "fmt/290"),
        _result("c", "fido", "x-fmt/111", "fmt/1085"),
    ]
    sf = [_result("b", "sf", "fmt/291"), _result("a", "sf", "fmt/11"), _result("d", "sf")]
    rows = compare(fido, sf)
    assert [str(r.path) for r in rows] == ["a", "b", "c", "d"]
    assert [r.agree for r in rows] == [True, False, False, False]
    assert rows[2].puids == (("x-fmt/111", "fmt/1085"), None)
    assert rows[3].to_dict()["results"][0] is None


def test_candidate_order_does_not_matter() -> None:
    rows = compare([_result("a", "x", "fmt/1", "fmt/2")], [_result("a", "y", "fmt/2", "fmt/1")])
    assert rows[0].agree


def test_summary_counts_disagreements() -> None:
    rows = compare(
        [_result("a", "x", "fmt/290"), _result("b", "x", "fmt/290"), _result("c", "x", "fmt/11")],
        [_result("a", "y", "fmt/291"), _result("b", "y", "fmt/291"), _result("c", "y", "fmt/11")],
    )
    summary = summarise(rows)
    assert (summary["files"], summary["agree"], summary["disagree"]) == (3, 1, 2)
    assert summary["top_disagreements"] == {"fmt/290 vs fmt/291": 2}
