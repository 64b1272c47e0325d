"""RFC 3161 time-stamps: asking a Time-Stamping Authority, and checking what it signed.

An RFC 4998 record time-stamps the root of a hash tree, a hash value that is
already computed. RFC 3161 lets a request carry any hash value as its
``messageImprint``, but rfc3161-client's request builder only hashes data it is
given, and a root hashed once more would no longer be the root a verifier
recomputes. So requests are built with asn1crypto (``TimeStampReq``: version 1,
the imprint as given, a random 64-bit nonce, ``certReq``) and only the
answers' signatures are checked by rfc3161-client.

Tokens are kept as DER ``ContentInfo`` blobs. Some TSAs (``openssl ts`` among
them) send the certificates of a token in an order DER forbids; the
certificate set is outside the signature, so it is re-sorted before the token
is kept or verified, and strict DER parsers accept the result.

A TSA that cannot be reached is :class:`TsaUnavailableError`, a transient
error worth retrying; a TSA that answers with a refusal, or a token that does
not verify, is :class:`~preservation.evidence.records.EvidenceError`.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import httpx
import rfc3161_client
from asn1crypto import cms, core, tsp, x509  # type: ignore[import-untyped]
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature

from preservation.errors import ConfigurationError, TransientError
from preservation.evidence.hashtree import ALGORITHMS, hasher
from preservation.evidence.records import EvidenceError, format_time

__all__ = [
    "EvidenceError",
    "HttpTimeStampAuthority",
    "StampInfo",
    "TimeStampAuthority",
    "TsaTrust",
    "TsaUnavailableError",
    "from_settings",
    "timestamp_request",
    "token_info",
    "token_response",
    "verify_token",
]

QUERY_TYPE = "application/timestamp-query"
REPLY_TYPES = ("application/timestamp-reply", "application/timestamp-response")
"""RFC 3161 §3.4 says ``-reply``; ``-response`` is what some older TSAs still send."""


class TsaUnavailableError(TransientError):
    """The TSA cannot be reached, timed out, failed (5xx) or asked to wait: try later."""


@dataclass(frozen=True)
class StampInfo:
    """What a time-stamp token says, in the terms a curator reads."""

    gen_time: datetime
    serial: int
    tsa: str
    policy: str
    algorithm: str
    imprint: bytes
    #: The end of the signing certificate's validity (None: the token carries none).
    #: RFC 4998 §5.3: a time-stamp must be renewed before this.
    signer_not_after: datetime | None = None

    def describe(self) -> str:
        return f"stamped {format_time(self.gen_time)} by {self.tsa}, serial {self.serial}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "gen_time": format_time(self.gen_time),
            "serial": self.serial,
            "tsa": self.tsa,
            "policy": self.policy,
            "algorithm": self.algorithm,
            "imprint": self.imprint.hex(),
        }


class TimeStampAuthority(Protocol):
    """Where tokens come from: an HTTP TSA in production, anything alike in a test."""

    def stamp(self, digest: bytes, algorithm: str = "sha256") -> bytes:
        """A DER TimeStampToken whose ``messageImprint.hashedMessage`` is ``digest`` itself."""
        ...


# asn1crypto's TimeStampResp makes the token mandatory; RFC 3161 §2.4.2 does not
# (a rejection carries none), and a refusal must be read to be reported.
class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def timestamp_request(digest: bytes, algorithm: str, nonce: int) -> bytes:
    """The DER TimeStampReq over ``digest`` as it is (see the module docstring)."""
    _check_digest(digest, algorithm)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": algorithm},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    return bytes(request.dump())


def _check_digest(digest: bytes, algorithm: str) -> None:
    size = hasher(algorithm)().digest_size
    if len(digest) != size:
        raise ValueError(f"a {algorithm} digest has {size} bytes, not {len(digest)}")


def _load_token(token: bytes) -> tuple[Any, Any]:
    """The token's ContentInfo and its TSTInfo, or an EvidenceError saying what is wrong."""
    try:
        info = cms.ContentInfo.load(token, strict=True)
        if info["content_type"].native != "signed_data":
            raise EvidenceError(
                f"a time-stamp token is CMS SignedData, this is {info['content_type'].native}"
            )
        signed = info["content"]
        encap = signed["encap_content_info"]
        if encap["content_type"].native != "tst_info":
            raise EvidenceError(
                f"the signed content is {encap['content_type'].native}, not an RFC 3161 TSTInfo"
            )
        tst = encap["content"].parsed
        _ = tst.native  # parse it all now, so a broken field fails here and not in a report
    except EvidenceError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise EvidenceError(f"the time-stamp token cannot be read: {err}") from None
    return info, tst


def _normalised(info: Any) -> Any:
    """The ContentInfo with its certificate set in DER order (it is not signed: see the top)."""
    signed = info["content"]
    certificates = signed["certificates"]
    if not isinstance(certificates, cms.CertificateSet) or len(certificates) < 2:
        return info
    encodings = [c.dump() for c in certificates]
    if encodings == sorted(encodings):
        return info
    signed["certificates"] = cms.CertificateSet(list(certificates))
    return info


def normalise_token(token: bytes) -> bytes:
    """``token`` with its certificates in DER order, unchanged if they already were."""
    info, _ = _load_token(token)
    return bytes(_normalised(info).dump())


def token_response(token: bytes) -> bytes:
    """A granted TimeStampResp around ``token``: what ``openssl ts -verify -in`` and
    rfc3161-client expect, since both verify responses rather than bare tokens."""
    info, _ = _load_token(token)
    response = _TimeStampResp(
        {"status": {"status": "granted"}, "time_stamp_token": _normalised(info)}
    )
    return bytes(response.dump())


_SHORT_NAMES = {
    "common_name": "CN",
    "country_name": "C",
    "locality_name": "L",
    "state_or_province_name": "ST",
    "organization_name": "O",
    "organizational_unit_name": "OU",
    "street_address": "STREET",
    "domain_component": "DC",
    "user_id": "UID",
}


def _rfc4514(name: Any) -> str:
    """A Name as RFC 4514 writes it (most specific first), as OpenSSL and browsers show it."""
    parts: list[str] = []
    for rdn in reversed(list(name.chosen)):
        pieces = []
        for pair in rdn:
            kind = pair["type"]
            label = _SHORT_NAMES.get(kind.native, kind.dotted)
            value = str(pair["value"].native)
            for special in '\\,+"<>;=':
                value = value.replace(special, "\\" + special)
            pieces.append(f"{label}={value}")
        parts.append("+".join(pieces))
    return ",".join(parts)


def _signer_subject(signed: Any) -> str | None:
    cert = _signer(signed)
    return None if cert is None else _rfc4514(cert.subject)


def _signer_not_after(signed: Any) -> datetime | None:
    cert = _signer(signed)
    return None if cert is None else cert["tbs_certificate"]["validity"]["not_after"].native


def _signer(signed: Any) -> Any:
    """The certificate the token names as its signer's, among those it carries."""
    infos = signed["signer_infos"]
    certificates = signed["certificates"]
    if len(infos) != 1 or not isinstance(certificates, cms.CertificateSet):
        return None
    sid = infos[0]["sid"]
    for choice in certificates:
        if choice.name != "certificate":
            continue
        cert = choice.chosen
        if sid.name == "issuer_and_serial_number":
            wanted = sid.chosen
            if (
                cert.issuer == wanted["issuer"]
                and cert.serial_number == wanted["serial_number"].native
            ):
                return cert
        elif cert.key_identifier == sid.chosen.native:
            return cert
    return None


def token_info(token: bytes) -> StampInfo:
    """What the token says, unverified: for display, and for comparing before verifying."""
    info, tst = _load_token(token)
    named = tst["tsa"]
    if isinstance(named, x509.GeneralName) and named.name == "directory_name":
        tsa = _rfc4514(named.chosen)
    elif isinstance(named, x509.GeneralName):
        tsa = f"{named.name}:{named.native}"
    else:
        tsa = _signer_subject(info["content"]) or "an unnamed TSA"
    imprint = tst["message_imprint"]
    return StampInfo(
        gen_time=tst["gen_time"].native,
        serial=int(tst["serial_number"].native),
        tsa=tsa,
        policy=str(tst["policy"].dotted),
        algorithm=str(imprint["hash_algorithm"]["algorithm"].native),
        imprint=bytes(imprint["hashed_message"].native),
        signer_not_after=_signer_not_after(info["content"]),
    )


def _nonce(token: bytes) -> int | None:
    _, tst = _load_token(token)
    value = tst["nonce"].native
    return None if value is None else int(value)


@dataclass(frozen=True)
class TsaTrust:
    """The certificates a token must chain to: self-signed ones are roots, others are not."""

    roots: tuple[cx509.Certificate, ...]
    intermediates: tuple[cx509.Certificate, ...] = ()

    def __post_init__(self) -> None:
        if not self.roots:
            raise ConfigurationError("TSA trust needs at least one self-signed (root) certificate")

    @classmethod
    def from_certificates(cls, certificates: Sequence[cx509.Certificate]) -> TsaTrust:
        roots = tuple(c for c in certificates if _self_signed(c))
        return cls(roots, tuple(c for c in certificates if not _self_signed(c)))

    @classmethod
    def from_pem(cls, pem: bytes, source: str = "the PEM data") -> TsaTrust:
        try:
            certificates = cx509.load_pem_x509_certificates(pem)
        except ValueError as err:
            raise ConfigurationError(f"{source} holds no readable certificate: {err}") from None
        if not any(_self_signed(c) for c in certificates):
            raise ConfigurationError(f"{source} has no self-signed (root) certificate to trust")
        return cls.from_certificates(certificates)

    @classmethod
    def from_pem_files(cls, paths: Sequence[Path | str]) -> TsaTrust:
        certificates: list[cx509.Certificate] = []
        for path in paths:
            try:
                pem = Path(path).read_bytes()
            except OSError as err:
                raise ConfigurationError(
                    f"TSA certificate file {path} cannot be read: {err.strerror}", path=path
                ) from None
            try:
                certificates.extend(cx509.load_pem_x509_certificates(pem))
            except ValueError as err:
                raise ConfigurationError(
                    f"TSA certificate file {path} holds no readable certificate: {err}",
                    path=path,
                ) from None
        if not any(_self_signed(c) for c in certificates):
            names = ", ".join(str(p) for p in paths) or "(no files)"
            raise ConfigurationError(f"no self-signed (root) certificate in {names}")
        return cls.from_certificates(certificates)

    def verify(self, token: bytes, digest: bytes, algorithm: str | None = None) -> StampInfo:
        """:func:`verify_token` with this trust: the callable ``records.verify`` takes."""
        return verify_token(token, digest, self, algorithm)


def _self_signed(certificate: cx509.Certificate) -> bool:
    if certificate.issuer != certificate.subject:
        return False
    try:
        certificate.verify_directly_issued_by(certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_token(
    token: bytes, digest: bytes, trust: TsaTrust, algorithm: str | None = None
) -> StampInfo:
    """Check that ``token`` is a TSA's signature over ``digest`` that chains to ``trust``.

    The certificates need only have been valid at the token's time (the
    library checks the chain at ``genTime``): that is the point of a time-stamp.
    """
    info = token_info(token)
    if algorithm is not None and info.algorithm != algorithm:
        raise EvidenceError(
            f"the time-stamp's imprint is a {info.algorithm} hash, the record says {algorithm}"
        )
    if info.imprint != digest:
        raise EvidenceError(
            f"the time-stamp covers {info.algorithm} {info.imprint.hex()}, not {digest.hex()}"
        )
    try:
        response = rfc3161_client.decode_timestamp_response(token_response(token))
        verifier = rfc3161_client.VerifierBuilder(
            roots=list(trust.roots), intermediates=list(trust.intermediates)
        ).build()
        verifier.verify(response, digest)
    except (rfc3161_client.VerificationError, ValueError) as err:
        raise EvidenceError(f"the time-stamp token does not verify: {_reason(err)}") from None
    return info


def _reason(err: Exception) -> str:
    """The library's message without OpenSSL's error-stack dump: its reasons are what matter."""
    text = str(err)
    found = re.findall(r'(?:reason|data): "([^"]*)"', text)
    if "ErrorStack" not in text or not found:
        return text
    head = text.split("ErrorStack")[0].rstrip(": ")
    return f"{head}: {'; '.join(dict.fromkeys(found))}"


class HttpTimeStampAuthority:
    """An RFC 3161 TSA over HTTP (RFC 3161 §3.4): one POST per stamp.

    With ``trust``, every token is verified before it is returned, so a
    misconfigured or impostor TSA is found when a batch is stamped, not years
    later when the record is needed.
    """

    def __init__(
        self,
        url: str,
        trust: TsaTrust | None = None,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.trust = trust
        self._client = httpx.Client(timeout=timeout, transport=transport)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpTimeStampAuthority:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stamp(self, digest: bytes, algorithm: str = "sha256") -> bytes:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported hash algorithm {algorithm!r}")
        nonce = secrets.randbits(64)
        query = timestamp_request(digest, algorithm, nonce)
        try:
            answer = self._client.post(
                self.url,
                content=query,
                headers={"Content-Type": QUERY_TYPE, "Accept": REPLY_TYPES[0]},
            )
        except httpx.TransportError as err:
            raise TsaUnavailableError(
                f"the TSA at {self.url} cannot be reached: {err or type(err).__name__}",
                url=self.url,
            ) from None
        if answer.status_code >= 500 or answer.status_code == 429:  # down, or "not now"
            raise TsaUnavailableError(
                f"the TSA at {self.url} failed: HTTP {answer.status_code}", url=self.url
            )
        if answer.status_code != 200:
            raise EvidenceError(
                f"the TSA at {self.url} refused the request: HTTP {answer.status_code} "
                f"{answer.text[:200].strip()}",
                url=self.url,
            )
        kind = answer.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if kind not in REPLY_TYPES:
            raise EvidenceError(
                f"the TSA at {self.url} answered with {kind or 'no content type'}, "
                f"not {REPLY_TYPES[0]}",
                url=self.url,
            )
        token = self._token(answer.content)
        got = token_info(token)
        if got.imprint != digest or got.algorithm != algorithm:
            raise EvidenceError(
                f"the TSA at {self.url} stamped {got.algorithm} {got.imprint.hex()}, "
                f"not the {algorithm} {digest.hex()} it was sent",
                url=self.url,
            )
        if _nonce(token) != nonce:
            raise EvidenceError(
                f"the TSA at {self.url} answered with another request's nonce", url=self.url
            )
        if self.trust is not None:
            verify_token(token, digest, self.trust, algorithm)
        return token

    def _token(self, reply: bytes) -> bytes:
        try:
            response = _TimeStampResp.load(reply, strict=True)
            status = response["status"]
            code = status["status"].native
            text = "; ".join(status["status_string"].native or [])
            failures = sorted(status["fail_info"].native or [])
        except (ValueError, TypeError, KeyError) as err:
            raise EvidenceError(
                f"the TSA at {self.url} sent a reply that is not a TimeStampResp: {err}",
                url=self.url,
            ) from None
        detail = ", ".join(filter(None, [text, " ".join(failures)])) or "no reason given"
        if code == "waiting":
            raise TsaUnavailableError(f"the TSA at {self.url} asks to wait: {detail}", url=self.url)
        if code not in ("granted", "granted_with_mods"):
            raise EvidenceError(
                f"the TSA at {self.url} rejected the request ({code}): {detail}", url=self.url
            )
        if isinstance(response["time_stamp_token"], core.Void):
            raise EvidenceError(
                f"the TSA at {self.url} granted the request but sent no token", url=self.url
            )
        return normalise_token(response["time_stamp_token"].dump())


def from_settings(
    url: str | None, cert_files: Sequence[Path], timeout: float = 10.0
) -> HttpTimeStampAuthority | None:
    """The configured TSA, or None when stamping is off (no URL).

    Without certificate files tokens are kept unverified; with them, a token
    that does not chain to them is refused at once.
    """
    if not url:
        return None
    trust = TsaTrust.from_pem_files(cert_files) if cert_files else None
    return HttpTimeStampAuthority(url, trust=trust, timeout=timeout)
