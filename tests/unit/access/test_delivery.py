"""Streamed DIP delivery: Range, If-Range, If-None-Match, and the 410 and 416 problems."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.responses import Response

from preservation.access import delivery
from preservation.access.delivery import file_response, parse_range
from preservation.api.problems import PROBLEM, install
from preservation.errors import GoneError, InvalidRequestError, RangeNotSatisfiableError

ETAG = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
SIZE = 1000
DATA = bytes(i % 251 for i in range(SIZE))


# --- parse_range -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, SIZE, None),
        ("bytes=0-99", SIZE, (0, 99)),
        ("bytes=10-", SIZE, (10, SIZE - 1)),
        ("bytes=-100", SIZE, (900, SIZE - 1)),
        ("bytes=0-0", SIZE, (0, 0)),
        ("bytes=999-999", SIZE, (999, 999)),
        ("bytes=500-5000", SIZE, (500, SIZE - 1)),  # last clamped
        ("bytes=-5000", SIZE, (0, SIZE - 1)),  # suffix longer than the file: the whole
        ("bytes=0-" + "9" * 5000, SIZE, (0, SIZE - 1)),  # past int()'s digit limit
        ("Bytes=1-2", SIZE, (1, 2)),  # the unit is case-insensitive
        ("bytes= 3-4 ,", SIZE, (3, 4)),  # an empty list element means nothing
        ("bytes=0-1,5-6", SIZE, None),  # several ranges: the whole, 200
        ("bytes=0-1, -5", SIZE, None),
        ("bytes=5-4", SIZE, None),  # last before first: invalid, ignored
        ("bytes=-", SIZE, None),
        ("bytes=", SIZE, None),
        ("bytes=abc", SIZE, None),
        ("bytes=1-2-3", SIZE, None),
        ("bytes=+1-2", SIZE, None),
        ("bytes=١-٢", SIZE, None),  # digits are ASCII only
        ("items=0-1", SIZE, None),  # another unit
        ("0-1", SIZE, None),
        ("", SIZE, None),
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", SIZE),
        ("bytes=1000-1005", SIZE),
        ("bytes=" + "9" * 5000 + "-", SIZE),
        ("bytes=-0", SIZE),
        ("bytes=0-", 0),  # an empty file has no byte to send
        ("bytes=-5", 0),
    ],
)
def test_parse_range_past_the_end_raises(header: str, size: int) -> None:
    with pytest.raises(RangeNotSatisfiableError) as info:
        parse_range(header, size)
    assert isinstance(info.value, InvalidRequestError)
    assert info.value.context == {
        "rule": "range-not-satisfiable",
        "field": "header:Range",
        "size": size,
    }


# --- file_response through an app --------------------------------------------------


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    path = tmp_path / "dip.zip"
    path.write_bytes(DATA)
    return path


def _app(path: Path, filename: str = "dip-1.zip") -> FastAPI:
    app = FastAPI()
    install(app)

    @app.get("/dip")
    def dip(request: Request) -> Response:
        return file_response(
            path,
            etag=ETAG,
            media_type="application/zip",
            filename=filename,
            range_header=request.headers.get("range"),
            if_range=request.headers.get("if-range"),
            if_none_match=request.headers.get("if-none-match"),
        )

    @app.get("/gone")
    def gone() -> None:
        raise GoneError(
            "the AIP was disposed of",
            aip_id="a1",
            tombstone={"aip_id": "a1", "disposed_at": datetime(2026, 1, 2, tzinfo=UTC)},
        )

    return app


@pytest.fixture
def client(payload: Path) -> TestClient:
    return TestClient(_app(payload))


def test_the_whole_file(client: TestClient) -> None:
    r = client.get("/dip")
    assert r.status_code == 200
    assert r.content == DATA
    assert r.headers["content-length"] == str(SIZE)
    assert r.headers["etag"] == f'"{ETAG}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == 'attachment; filename="dip-1.zip"'
    assert "content-range" not in r.headers


def test_the_rest_from_a_byte(client: TestClient) -> None:
    r = client.get("/dip", headers={"Range": "bytes=10-"})
    assert r.status_code == 206
    assert r.content == DATA[10:]
    assert r.headers["content-range"] == f"bytes 10-{SIZE - 1}/{SIZE}"
    assert r.headers["content-length"] == str(SIZE - 10)
    assert r.headers["etag"] == f'"{ETAG}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-type"] == "application/zip"


def test_a_closed_range_clamped_and_a_suffix(client: TestClient) -> None:
    r = client.get("/dip", headers={"Range": "bytes=990-2000"})
    assert (r.status_code, r.content) == (206, DATA[990:])
    assert r.headers["content-range"] == f"bytes 990-999/{SIZE}"

    r = client.get("/dip", headers={"Range": "bytes=-10"})
    assert (r.status_code, r.content) == (206, DATA[-10:])
    assert r.headers["content-range"] == f"bytes 990-999/{SIZE}"
    assert r.headers["content-length"] == "10"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=nonsense", "lines=1-2"])
def test_multi_or_invalid_ranges_get_the_whole(client: TestClient, header: str) -> None:
    r = client.get("/dip", headers={"Range": header})
    assert (r.status_code, r.content) == (200, DATA)
    assert r.headers["content-length"] == str(SIZE)


def test_a_range_past_the_end_is_a_416_problem(client: TestClient) -> None:
    r = client.get("/dip", headers={"Range": f"bytes={SIZE}-"})
    assert r.status_code == 416
    assert r.headers["content-type"] == PROBLEM
    assert r.headers["content-range"] == f"bytes */{SIZE}"
    body = r.json()
    assert body["status"] == 416
    assert body["title"] == "Range Not Satisfiable"
    assert body["rule"] == "range-not-satisfiable"
    assert body["field"] == "header:Range"
    assert body["size"] == SIZE
    assert body["error"] == "RangeNotSatisfiableError"


def test_an_empty_file_with_a_range_is_416(tmp_path: Path) -> None:
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    client = TestClient(_app(empty))
    r = client.get("/dip", headers={"Range": "bytes=-5"})
    assert r.status_code == 416
    assert r.headers["content-range"] == "bytes */0"
    r = client.get("/dip")
    assert (r.status_code, r.content, r.headers["content-length"]) == (200, b"", "0")


@pytest.mark.parametrize("if_range", [f'"{ETAG}"', ETAG])
def test_if_range_matching_keeps_the_range(client: TestClient, if_range: str) -> None:
    r = client.get("/dip", headers={"Range": "bytes=10-", "If-Range": if_range})
    assert (r.status_code, r.content) == (206, DATA[10:])


@pytest.mark.parametrize("if_range", ['"another"', f'W/"{ETAG}"', "Wed, 21 Oct 2015 07:28:00 GMT"])
def test_if_range_mismatch_sends_the_whole(client: TestClient, if_range: str) -> None:
    r = client.get("/dip", headers={"Range": "bytes=10-", "If-Range": if_range})
    assert (r.status_code, r.content) == (200, DATA)
    assert "content-range" not in r.headers


def test_if_range_mismatch_ignores_even_a_range_past_the_end(client: TestClient) -> None:
    r = client.get("/dip", headers={"Range": f"bytes={SIZE * 2}-", "If-Range": '"old"'})
    assert (r.status_code, r.content) == (200, DATA)


@pytest.mark.parametrize(
    "if_none_match", [f'"{ETAG}"', ETAG, "*", f'"x", W/"{ETAG}"', f'"a",  "{ETAG}" ']
)
def test_if_none_match_is_304(client: TestClient, if_none_match: str) -> None:
    r = client.get("/dip", headers={"If-None-Match": if_none_match, "Range": "bytes=0-1"})
    assert r.status_code == 304
    assert r.content == b""
    assert r.headers["etag"] == f'"{ETAG}"'


def test_if_none_match_other_etag_sends_the_file(client: TestClient) -> None:
    r = client.get("/dip", headers={"If-None-Match": '"older"'})
    assert (r.status_code, r.content) == (200, DATA)


def test_a_resumed_download_concatenates_to_the_file(
    payload: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "CHUNK_SIZE", 64)  # several chunks per response
    client = TestClient(_app(payload))
    first = client.get("/dip", headers={"Range": f"bytes=0-{SIZE // 2 - 1}"})
    assert first.status_code == 206
    assert first.headers["content-range"] == f"bytes 0-{SIZE // 2 - 1}/{SIZE}"
    rest = client.get(
        "/dip", headers={"Range": f"bytes={len(first.content)}-", "If-Range": first.headers["etag"]}
    )
    assert rest.status_code == 206
    assert rest.headers["content-range"] == f"bytes {SIZE // 2}-{SIZE - 1}/{SIZE}"
    assert first.content + rest.content == DATA
    assert payload.read_bytes() == DATA


def test_a_file_shorter_than_promised_breaks_the_stream(payload: Path) -> None:
    response = file_response(
        payload, etag=ETAG, media_type="application/zip", filename="d.zip", range_header=None
    )
    payload.write_bytes(DATA[:10])  # truncated in place after the length was taken
    app = FastAPI()
    app.get("/dip")(lambda: response)
    with pytest.raises(OSError, match="short"):
        TestClient(app).get("/dip")


def test_a_non_ascii_filename_has_filename_star(payload: Path) -> None:
    client = TestClient(_app(payload, filename='Zoë "x".zip'))
    r = client.get("/dip")
    assert r.headers["content-disposition"] == (
        'attachment; filename="Zo_ \\"x\\".zip"; filename*=UTF-8\'\'Zo%C3%AB%20%22x%22.zip'
    )


def test_an_etag_with_quotes_is_refused(payload: Path) -> None:
    with pytest.raises(ValueError):
        file_response(
            payload, etag='"x"', media_type="application/zip", filename="d", range_header=None
        )


def test_gone_is_410_with_the_tombstone(client: TestClient) -> None:
    r = client.get("/gone")
    assert r.status_code == 410
    assert r.headers["content-type"] == PROBLEM
    body = r.json()
    assert body["title"] == "Gone"
    assert body["error"] == "GoneError"
    assert body["aip_id"] == "a1"
    assert body["tombstone"] == {"aip_id": "a1", "disposed_at": "2026-01-02T00:00:00+00:00"}
