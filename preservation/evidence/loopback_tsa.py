"""A real RFC 3161 Time-Stamping Authority on loopback, for tests, benchmarks and demonstrations.

Evidence records are only worth what their verification proves, and a mocked
TSA proves nothing: this one signs with ``openssl ts -reply``, the reference
implementation, under a PKI of its own (a CA and a TSA certificate with the
critical ``id-kp-timeStamping`` extended key usage RFC 3161 §2.3 requires).
It can be stopped and started again on the same port, so the behaviour of a
client whose TSA goes away and comes back can be shown, not assumed.

Run one in the foreground with ``python -m preservation.evidence.loopback_tsa DIR``;
the PKI in ``DIR`` is made once and kept, so its CA stays the one to trust.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from preservation.errors import ToolUnavailableError

__all__ = ["POLICY", "LoopbackTsa", "TsaPki", "main", "make_pki"]

POLICY = "1.3.6.1.4.1.99999.1.1"
"""The policy OID the loopback TSA stamps under (a private-enterprise arc: never a real policy)."""

_VALIDITY = dt.timedelta(days=365 * 30)
_MAX_QUERY = 64 * 1024


@dataclass(frozen=True)
class TsaPki:
    """Where a loopback TSA's certificates, key and ``openssl ts`` configuration live."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def tsa_cert(self) -> Path:
        return self.directory / "tsa.pem"

    @property
    def tsa_key(self) -> Path:
        return self.directory / "tsa.key"

    @property
    def chain(self) -> Path:
        """The TSA certificate then the CA: what a verifier needs besides the root."""
        return self.directory / "chain.pem"

    @property
    def config(self) -> Path:
        return self.directory / "openssl-tsa.cnf"

    @property
    def serial(self) -> Path:
        return self.directory / "serial"

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def exists(self) -> bool:
        return all(p.is_file() for p in (self.ca_cert, self.tsa_cert, self.tsa_key, self.config))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Preservation loopback"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_pki(directory: Path, name: str = "Loopback TSA") -> TsaPki:
    """Make a CA and a TSA certificate it signs, and the ``openssl ts`` configuration.

    RSA keys, because every verifier of the next decades will still read them.
    The TSA certificate's extended key usage is critical and only
    ``timeStamping``: RFC 3161 §2.3 demands it, and verifiers (openssl,
    rfc3161-client) refuse a token signed under anything looser.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    pki = TsaPki(directory)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = _name(f"{name} CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    tsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    tsa = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )

    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    tsa_pem = tsa.public_bytes(serialization.Encoding.PEM)
    pki.ca_cert.write_bytes(ca_pem)
    pki.tsa_cert.write_bytes(tsa_pem)
    pki.chain.write_bytes(tsa_pem + ca_pem)
    pki.tsa_key.touch(mode=0o600)
    pki.tsa_key.write_bytes(_pem_key(tsa_key))
    pki.serial.write_text("01\n", encoding="ascii")
    # certs= names the CA only: openssl adds the signer's certificate itself when
    # the request asks for it, and a second copy would only make the token longer.
    pki.config.write_text(
        f"""# openssl ts -reply configuration of a loopback TSA (made by make_pki).
[ tsa ]
default_tsa = tsa_section

[ tsa_section ]
serial = {pki.serial}
crypto_device = builtin
signer_cert = {pki.tsa_cert}
certs = {pki.ca_cert}
signer_key = {pki.tsa_key}
signer_digest = sha256
default_policy = {POLICY}
other_policies = 1.3.6.1.4.1.99999.1.2
digests = sha256, sha512
accuracy = secs:1
clock_precision_digits = 3
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
""",
        encoding="ascii",
    )
    return pki


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        raise ToolUnavailableError(
            "the loopback TSA needs the openssl program, which is not on PATH", tool="openssl"
        )
    return found


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tsa: LoopbackTsa


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= _MAX_QUERY:
            self._answer(400, b"a time-stamp query of 1 byte to 64 KiB is expected\n")
            return
        query = self.rfile.read(length)
        try:
            reply = self.server.tsa._reply(query)
        except subprocess.CalledProcessError as err:
            self._answer(400, b"openssl ts -reply refused the query: " + err.stderr[-400:])
            return
        self._answer(200, reply, "application/timestamp-reply")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        return None  # a test run's output is not the place for an access log


class LoopbackTsa:
    """An HTTP TSA on 127.0.0.1 that answers with ``openssl ts -reply``.

    ``stop`` and ``start`` keep the port, so a test can take the TSA away and
    bring it back at the same URL a client was configured with.
    """

    def __init__(self, pki: TsaPki, port: int = 0) -> None:
        self.pki = pki
        self.port = port
        self.requests = 0
        self._openssl = _openssl()
        self._lock = threading.Lock()  # one openssl at a time: it rewrites the serial file
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> LoopbackTsa:
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.tsa = self
        self.port = server.server_address[1]
        self._server = server
        # A short poll: stop() waits up to one interval, and tests stop and start often.
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"loopback-tsa-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LoopbackTsa:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _reply(self, query: bytes) -> bytes:
        with self._lock, tempfile.TemporaryDirectory(prefix="loopback-tsa-") as scratch:
            query_file = Path(scratch) / "query.tsq"
            reply_file = Path(scratch) / "reply.tsr"
            query_file.write_bytes(query)
            subprocess.run(
                [
                    self._openssl,
                    "ts",
                    "-reply",
                    "-config",
                    str(self.pki.config),
                    "-queryfile",
                    str(query_file),
                    "-out",
                    str(reply_file),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
            self.requests += 1
            return reply_file.read_bytes()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preservation.evidence.loopback_tsa",
        description="Run a loopback RFC 3161 TSA (openssl ts) until interrupted.",
    )
    parser.add_argument("directory", type=Path, help="where the PKI is kept (made if missing)")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any)")
    parser.add_argument("--name", default="Loopback TSA", help="the TSA's common name")
    args = parser.parse_args(argv)
    pki = TsaPki(args.directory)
    if not pki.exists():
        pki = make_pki(args.directory, args.name)
    tsa = LoopbackTsa(pki, args.port).start()
    print(f"TSA URL: {tsa.url}", flush=True)
    print(f"CA certificate (trust this): {pki.ca_cert}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        tsa.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
