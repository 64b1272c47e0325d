"""RFC 3161 against a real TSA (``openssl ts`` on loopback): stamping, verifying, failing well."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import rfc3161_client
from asn1crypto import cms, tsp  # type: ignore[import-untyped]

from preservation.errors import ConfigurationError, ToolUnavailableError, TransientError
from preservation.evidence.loopback_tsa import POLICY, LoopbackTsa, TsaPki, make_pki
from preservation.evidence.records import EvidenceError
from preservation.evidence.tsa import (
    HttpTimeStampAuthority,
    TsaTrust,
    TsaUnavailableError,
    from_settings,
    normalise_token,
    timestamp_request,
    token_info,
    token_response,
    verify_token,
)
from tests.conftest import require_program

DIGEST = hashlib.sha256(b"the root of a hash tree").digest()


@pytest.fixture(scope="module")
def openssl() -> str:
    return require_program("openssl")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory, openssl: str) -> TsaPki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory: pytest.TempPathFactory, openssl: str) -> TsaPki:
    return make_pki(tmp_path_factory.mktemp("other"), "Other TSA")


@pytest.fixture(scope="module")
def server(pki: TsaPki) -> Iterator[LoopbackTsa]:
    with LoopbackTsa(pki) as running:
        yield running


@pytest.fixture(scope="module")
def trust(pki: TsaPki) -> TsaTrust:
    return TsaTrust.from_pem(pki.ca_pem)


@pytest.fixture(scope="module")
def token(server: LoopbackTsa, trust: TsaTrust) -> bytes:
    with HttpTimeStampAuthority(server.url, trust) as tsa:
        return tsa.stamp(DIGEST)


def test_a_stamp_verifies_and_says_what_it_covers(token: bytes, trust: TsaTrust) -> None:
    info = verify_token(token, DIGEST, trust, "sha256")
    assert info == token_info(token) == trust.verify(token, DIGEST)
    assert info.imprint == DIGEST
    assert info.algorithm == "sha256"
    assert info.policy == POLICY
    assert info.tsa == "CN=Loopback TSA,O=Preservation loopback"
    assert info.serial >= 1
    assert abs(datetime.now(UTC) - info.gen_time) < timedelta(minutes=1)
    assert info.describe().startswith("stamped 20") and f"serial {info.serial}" in info.describe()


def test_sha512_imprints_are_stamped_as_given(server: LoopbackTsa, trust: TsaTrust) -> None:
    digest = hashlib.sha512(b"renewed").digest()
    with HttpTimeStampAuthority(server.url, trust) as tsa:
        info = verify_token(tsa.stamp(digest, "sha512"), digest, trust, "sha512")
    assert (info.algorithm, info.imprint) == ("sha512", digest)


def test_a_token_over_another_digest_is_refused(token: bytes, trust: TsaTrust) -> None:
    with pytest.raises(EvidenceError, match="the time-stamp covers sha256 .*, not "):
        verify_token(token, hashlib.sha256(b"something else").digest(), trust)
    with pytest.raises(EvidenceError, match="imprint is a sha256 hash, the record says sha512"):
        verify_token(token, DIGEST, trust, "sha512")


def test_a_token_from_another_ca_is_refused(
    token: bytes, other_pki: TsaPki, server: LoopbackTsa
) -> None:
    other = TsaTrust.from_pem(other_pki.ca_pem)
    with pytest.raises(EvidenceError, match="does not verify: .*certificate verify error"):
        verify_token(token, DIGEST, other)
    with HttpTimeStampAuthority(server.url, other) as tsa, pytest.raises(EvidenceError):
        tsa.stamp(DIGEST)


def test_a_tampered_token_is_refused(token: bytes, trust: TsaTrust) -> None:
    # The first "Loopback TSA" is the TSTInfo's tsa name: signed content.
    at = token.index(b"Loopback TSA")
    content = token[:at] + b"M" + token[at + 1 :]
    assert token_info(content).tsa.startswith("CN=Moopback TSA")
    with pytest.raises(EvidenceError, match="does not verify: .*digest failure"):
        verify_token(content, DIGEST, trust)
    signature = token[:-10] + bytes([token[-10] ^ 1]) + token[-9:]
    with pytest.raises(EvidenceError, match="does not verify"):
        verify_token(signature, DIGEST, trust)
    with pytest.raises(EvidenceError, match="cannot be read"):
        verify_token(token[:-1], DIGEST, trust)
    with pytest.raises(EvidenceError, match="cannot be read"):
        token_info(b"not a token")


def test_openssl_accepts_our_tokens(token: bytes, pki: TsaPki, tmp_path: Path) -> None:
    response, raw = tmp_path / "stamp.tsr", tmp_path / "stamp.tst"
    response.write_bytes(token_response(token))
    raw.write_bytes(token)

    def openssl_verify(*args: str, digest: bytes = DIGEST) -> subprocess.CompletedProcess[str]:
        command = ["openssl", "ts", "-verify", "-digest", digest.hex(), *args]
        return subprocess.run(
            [*command, "-CAfile", str(pki.ca_cert)], capture_output=True, text=True
        )

    for args in (("-in", str(response)), ("-token_in", "-in", str(raw))):
        done = openssl_verify(*args)
        assert done.returncode == 0, done.stderr
        assert "Verification: OK" in done.stdout
        wrong = openssl_verify(*args, digest=hashlib.sha256(b"x").digest())
        assert wrong.returncode != 0


def test_a_stopped_tsa_is_transient_and_comes_back_on_the_same_port(pki: TsaPki) -> None:
    with LoopbackTsa(pki) as server, HttpTimeStampAuthority(server.url, timeout=2) as tsa:
        url, port = server.url, server.port
        tsa.stamp(DIGEST)
        server.stop()
        with pytest.raises(TsaUnavailableError, match=f"TSA at {url} cannot be reached") as err:
            tsa.stamp(DIGEST)
        assert isinstance(err.value, TransientError)
        server.start()
        assert (server.url, server.port) == (url, port)
        token = tsa.stamp(DIGEST)
        assert token_info(token).imprint == DIGEST
        assert server.requests == 2


def test_a_tsa_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/"
        with HttpTimeStampAuthority(url, timeout=0.3) as tsa:
            with pytest.raises(TsaUnavailableError, match="cannot be reached"):
                tsa.stamp(DIGEST)


@pytest.mark.parametrize(
    ("status", "content_type", "error", "message"),
    [
        (503, "text/plain", TsaUnavailableError, "failed: HTTP 503"),
        (500, "text/plain", TsaUnavailableError, "failed: HTTP 500"),
        (404, "text/plain", EvidenceError, "refused the request: HTTP 404 no TSA here"),
        (200, "text/html", EvidenceError, "answered with text/html"),
        (200, "application/timestamp-reply", EvidenceError, "not a TimeStampResp"),
    ],
)
def test_http_failures_are_told_apart(
    status: int, content_type: str, error: type[Exception], message: str
) -> None:
    # Only HTTP is faked here, for the statuses a loopback openssl never sends.
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["Content-Type"] == "application/timestamp-query"
        headers = {"Content-Type": content_type}
        return httpx.Response(status, content=b"no TSA here", headers=headers)

    url = "http://tsa.invalid/"
    with HttpTimeStampAuthority(url, transport=httpx.MockTransport(answer)) as tsa:
        with pytest.raises(error, match=message) as caught:
            tsa.stamp(DIGEST)
    assert url in str(caught.value)


def test_a_rejection_is_an_evidence_error_with_the_tsa_s_reason(
    tmp_path: Path, openssl: str
) -> None:
    pki = make_pki(tmp_path, "Strict TSA")
    config = pki.config.read_text(encoding="ascii")
    pki.config.write_text(config.replace("digests = sha256, sha512", "digests = sha256"))
    with LoopbackTsa(pki) as server, HttpTimeStampAuthority(server.url) as tsa:
        with pytest.raises(EvidenceError, match=r"rejected the request \(rejection\): .*bad_alg"):
            tsa.stamp(hashlib.sha512(b"x").digest(), "sha512")


def test_the_request_carries_the_digest_itself() -> None:
    request = tsp.TimeStampReq.load(timestamp_request(DIGEST, "sha256", 2**64 - 1))
    assert request["message_imprint"]["hashed_message"].native == DIGEST
    assert request["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert (request["version"].native, request["nonce"].native) == ("v1", 2**64 - 1)
    assert request["cert_req"].native is True
    with pytest.raises(ValueError, match="32 bytes, not 5"):
        timestamp_request(b"short", "sha256", 1)


def test_certificates_in_an_order_der_forbids_are_put_right(token: bytes, trust: TsaTrust) -> None:
    certificates = sorted(c.dump() for c in cms.ContentInfo.load(token)["content"]["certificates"])
    assert len(certificates) == 2
    unsorted = token.replace(b"".join(certificates), b"".join(reversed(certificates)))
    assert unsorted != token
    wrapped = tsp.TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": cms.ContentInfo.load(unsorted)}
    ).dump()
    with pytest.raises(ValueError, match="InvalidSetOrdering"):
        rfc3161_client.decode_timestamp_response(wrapped)
    assert normalise_token(unsorted) == token
    assert verify_token(unsorted, DIGEST, trust).imprint == DIGEST


def test_trust_is_read_from_pem_files(pki: TsaPki, tmp_path: Path) -> None:
    trust = TsaTrust.from_pem_files([pki.chain])
    assert [c.subject.rfc4514_string() for c in trust.roots] == [
        "CN=Loopback TSA CA,O=Preservation loopback"
    ]
    assert len(trust.intermediates) == 1
    with pytest.raises(ConfigurationError, match="no self-signed"):
        TsaTrust.from_pem_files([pki.tsa_cert])
    with pytest.raises(ConfigurationError, match="cannot be read"):
        TsaTrust.from_pem_files([tmp_path / "missing.pem"])
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="no readable certificate"):
        TsaTrust.from_pem_files([tmp_path / "junk.pem"])


def test_from_settings(pki: TsaPki) -> None:
    assert from_settings(None, [pki.ca_cert]) is None
    tsa = from_settings("http://127.0.0.1:1/", [pki.ca_cert], timeout=3)
    assert tsa is not None and tsa.trust is not None and tsa.url == "http://127.0.0.1:1/"
    tsa.close()
    bare = from_settings("http://127.0.0.1:1/", [])
    assert bare is not None and bare.trust is None
    bare.close()


def test_without_openssl_the_loopback_tsa_says_so(
    pki: TsaPki, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolUnavailableError, match="needs the openssl program") as err:
        LoopbackTsa(pki)
    assert err.value.context == {"tool": "openssl"}


def test_the_loopback_tsa_runs_from_the_command_line(tmp_path: Path, openssl: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "preservation.evidence.loopback_tsa", str(tmp_path)]
    process = subprocess.Popen([*command, "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"TSA URL: http://127.0.0.1:{port}/"
        assert str(tmp_path / "ca.pem") in process.stdout.readline()
        trust = TsaTrust.from_pem_files([tmp_path / "ca.pem"])
        with HttpTimeStampAuthority(f"http://127.0.0.1:{port}/", trust) as tsa:
            assert token_info(tsa.stamp(DIGEST)).imprint == DIGEST
    finally:
        process.terminate()
        process.wait(timeout=10)
