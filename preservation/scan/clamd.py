"""clamd, ClamAV's daemon, spoken to over its socket by hand.

clamd keeps the signatures loaded, so a batch costs one connection, not one
database load. A batch is one ``IDSESSION``: ``VERSION`` (the release the
report names), one request per file, ``END``. Requests are pipelined: clamd
scans them on its thread pool and answers each with its request number, in
whatever order they finish, and the client reads while it writes, as clamd
requires (it drops a client that stops reading).

Two ways to hand clamd a file, chosen by the address (``settings.clamd_socket``):

``/run/clamav/clamd.ctl`` (a unix socket path)
    *path mode*: clamd shares our filesystem and opens the files itself
    (``SCAN <real path>``). Nothing is copied, but clamd's user must be able to
    read the staging folder. Paths are resolved first: clamd answers "OK" for a
    symbolic link it does not follow, without reading anything.
``tcp://host:3310``
    *stream mode*: each file is sent with ``INSTREAM`` in 64 KiB chunks, never
    whole in memory. For a clamd on another host, or in a container that
    cannot see our files.
``stream:/run/clamav/clamd.ctl``
    stream mode over a unix socket, for a local clamd that may not read our files.

In stream mode clamd refuses a file longer than its ``StreamMaxLength``
("INSTREAM size limit exceeded") and closes the connection: that file is an
error in the report, and the files after it go on a new connection. A socket
that is missing, refuses, or stops answering raises ``ScannerUnavailableError``.

clamd reports a file past its scan limits (MaxFileSize, MaxScanSize) as OK
without reading it unless its configuration says ``AlertExceedsMax yes``; set
that, and such files become errors in the report rather than clean.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from preservation.errors import ConfigurationError, ScannerUnavailableError
from preservation.scan.interfaces import Batch, ScanReport, describe_database

__all__ = ["ClamdScanner", "parse_version"]

Mode = Literal["path", "stream"]

_CHUNK = 1 << 16
_BUFFER = 1 << 18  # bytes queued for the socket at most, whatever the file size
_END_OF_STREAM = struct.pack(">I", 0)
# A round in which clamd answered no file at all; this many in a row and it is broken.
_ROUNDS_WITHOUT_PROGRESS = 3


def parse_version(text: str) -> tuple[str, str | None]:
    """Split clamd's VERSION answer into the engine and the signature release.

    ``ClamAV 1.4.6/27420/Thu Nov  5 08:00:00 2026`` names the official daily
    release; with custom signatures only, clamd says just ``ClamAV 1.4.6``.
    """
    text = text.strip()
    if not text.startswith("ClamAV"):
        raise ScannerUnavailableError(
            f"the socket answered VERSION with {text[:80]!r}: is it clamd?", tool="clamd"
        )
    engine, _, database = text.partition("/")
    return engine.strip(), database.strip() or None


@dataclass
class _Request:
    target: bytes | None  # None: the VERSION request
    body: Callable[[], Iterator[bytes]]


class ClamdScanner:
    """A running clamd, one connection per batch.

    ``database`` is clamd's DatabaseDirectory, when this host can see it: with
    custom signatures clamd names no release, and the report then describes
    that folder instead of saying "unknown". ``timeout`` bounds each wait for
    clamd (a socket that stops answering for that long is unavailable); it must
    exceed clamd's own MaxScanTime, the longest it spends on one file.
    """

    name = "clamd"

    def __init__(
        self,
        address: str,
        *,
        database: Path | None = None,
        timeout: float = 300.0,
        connect_timeout: float = 10.0,
        window: int | None = None,
    ) -> None:
        self.address = address
        self.database = Path(database) if database is not None else None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.mode: Mode
        self._unix: str | None = None
        self._tcp: tuple[str, int] | None = None
        text = address
        forced: Mode | None = None
        if text.startswith("stream:"):
            forced, text = "stream", text[len("stream:") :]
        if text.startswith("tcp://"):
            parts = urlsplit(text)
            try:
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None:
                raise ConfigurationError(
                    f"clamd_socket {address!r}: a TCP address is tcp://host:port"
                )
            self._tcp = (parts.hostname, port)
            self.mode = forced or "stream"
        elif text:
            self._unix = text
            self.mode = forced or "path"
        else:
            raise ConfigurationError(f"clamd_socket {address!r} names no socket")
        # Requests answered out of order are fine; too many queued on clamd is not
        # (MaxQueue), and in stream mode a refused file costs the ones sent after it.
        self.window = window or (64 if self.mode == "path" else 8)

    @property
    def where(self) -> str:
        """The socket, as messages name it."""
        if self._unix is not None:
            return self._unix
        assert self._tcp is not None
        return f"{self._tcp[0]}:{self._tcp[1]}"

    # -- the batch -------------------------------------------------------------

    def scan(self, paths: Sequence[Path]) -> ScanReport:
        batch = Batch(paths)
        version: tuple[str, str | None] | None = None
        pending = [self._request(batch, target) for target in batch.targets]
        idle_rounds = 0
        while version is None or pending:
            requests = pending
            if version is None:
                requests = [_Request(None, lambda: iter((b"zVERSION\0",)))] + pending
            started, replies = self._converse(requests)
            answered = 0
            for number, request in enumerate(started, start=1):
                texts = replies.get(number)
                if not texts:
                    continue
                if request.target is None:
                    version = parse_version(os.fsdecode(texts[0]))
                    continue
                answered += 1
                for text in texts:
                    self._settle(batch, request.target, text)
            pending = [
                request
                for number, request in enumerate(requests, start=1)
                if request.target is not None and not replies.get(number)
            ]
            if answered or (not pending and version is not None):
                idle_rounds = 0
                continue
            idle_rounds += 1
            if not pending or idle_rounds >= _ROUNDS_WITHOUT_PROGRESS:
                raise ScannerUnavailableError(
                    f"clamd at {self.where} closes the connection without answering "
                    f"({len(pending)} files unscanned); see clamd's log",
                    tool="clamd",
                )
            # The first file of a round that got nowhere is what clamd dropped the
            # connection over (over TCP, its refusal can be lost with the connection).
            culprit = pending.pop(0)
            assert culprit.target is not None
            batch.fail(culprit.target, self._dropped)
        engine, reported = version
        return batch.report(engine, describe_database(self.database, reported))

    @property
    def _dropped(self) -> str:
        if self.mode == "stream":
            return (
                "clamd closed the connection while taking this file "
                "(larger than its StreamMaxLength?)"
            )
        return "clamd closed the connection while scanning this file (see clamd's log)"

    def _request(self, batch: Batch, target: bytes) -> _Request:
        if self.mode == "path":
            command = b"zSCAN " + target + b"\0"
            return _Request(target, lambda: iter((command,)))

        def stream() -> Iterator[bytes]:
            yield b"zINSTREAM\0"
            try:
                with open(target, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        yield struct.pack(">I", len(chunk)) + chunk
            except OSError as err:
                # What was sent is scanned and answered; the answer cannot vouch for the file.
                batch.fail(target, f"could not be read to stream it: {err.strerror or err}")
            yield _END_OF_STREAM

        return _Request(target, stream)

    def _settle(self, batch: Batch, target: bytes, text: bytes) -> None:
        """One answer for one file: ``<path>: <verdict>`` or ``stream: <verdict>``."""
        for prefix in (target + b": ", b"stream: "):
            if text.startswith(prefix):
                text = text[len(prefix) :]
                break
        if b"size limit exceeded" in text:
            batch.fail(
                target,
                "larger than clamd's StreamMaxLength: clamd refused it "
                "(INSTREAM size limit exceeded)",
            )
        elif not batch.verdict(target, text):
            batch.fail(target, f"unexpected answer from clamd: {os.fsdecode(text)[:200]}")
        elif self.mode == "path" and (b"Access denied" in text or b"Permission denied" in text):
            batch.fail(
                target,
                "clamd may not read it: let clamd's user read the staging folder, or "
                f"use stream mode (clamd_socket = 'stream:{self.where}')",
            )

    # -- the connection --------------------------------------------------------

    def _connect(self) -> socket.socket:
        where = self.where
        try:
            if self._unix is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(self.connect_timeout)
                    sock.connect(self._unix)
                except BaseException:
                    sock.close()
                    raise
                return sock
            assert self._tcp is not None
            return socket.create_connection(self._tcp, timeout=self.connect_timeout)
        except FileNotFoundError as err:
            message = (
                f"no clamd socket at {where}: is clamd running? (LocalSocket in clamd.conf "
                "must match PRESERVATION_CLAMD_SOCKET)"
            )
            raise ScannerUnavailableError(message, tool="clamd") from err
        except ConnectionRefusedError as err:
            if self._unix is not None:
                message = (
                    f"clamd is not running: nothing listens on {where} "
                    "(the socket file is left from a clamd that stopped); start clamd"
                )
            else:
                message = (
                    f"clamd refuses connections at {where}: is clamd running with "
                    "TCPSocket/TCPAddr set to that address?"
                )
            raise ScannerUnavailableError(message, tool="clamd") from err
        except PermissionError as err:
            message = (
                f"may not connect to clamd's socket {where}: see LocalSocketGroup and "
                "LocalSocketMode in clamd.conf"
            )
            raise ScannerUnavailableError(message, tool="clamd") from err
        except TimeoutError as err:
            message = f"clamd at {where} did not accept a connection in {self.connect_timeout} s"
            raise ScannerUnavailableError(message, tool="clamd") from err
        except OSError as err:
            message = f"cannot connect to clamd at {where}: {err}"
            raise ScannerUnavailableError(message, tool="clamd") from err

    def _converse(self, requests: list[_Request]) -> tuple[list[_Request], dict[int, list[bytes]]]:
        """One IDSESSION: send what the window allows while reading answers, until clamd closes.

        Returns the requests started (request *n* is ``started[n-1]``, as clamd
        numbers them) and the answers by number. A connection clamd cut short
        leaves later requests unanswered; the caller sends them again.
        """
        sock = self._connect()
        selector = selectors.DefaultSelector()
        started: list[_Request] = []
        replies: dict[int, list[bytes]] = {}
        body: Iterator[bytes] | None = None
        try:
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ)
            queue = deque(requests)
            out = bytearray(b"zIDSESSION\0")
            received = bytearray()
            ended, writable = False, True
            while True:
                while writable and not ended and len(out) < _BUFFER:
                    if body is None:
                        if len(started) - len(replies) >= self.window:
                            break
                        if not queue:
                            out += b"zEND\0"
                            ended = True
                            break
                        started.append(queue.popleft())
                        body = started[-1].body()
                    piece = next(body, None)
                    if piece is None:
                        body = None
                    else:
                        out += piece
                events = selectors.EVENT_READ
                if out and writable:
                    events |= selectors.EVENT_WRITE
                selector.modify(sock, events)
                ready = selector.select(self.timeout)
                if not ready:
                    raise ScannerUnavailableError(
                        f"clamd at {self.where} stopped answering for {self.timeout} s "
                        f"({len(replies)} of {len(started)} requests answered): hung or "
                        "overloaded?",
                        tool="clamd",
                    )
                mask = ready[0][1]
                if mask & selectors.EVENT_READ:
                    try:
                        data = sock.recv(1 << 16)
                    except BlockingIOError:
                        data = None
                    except ConnectionResetError:
                        data = b""
                    if data == b"":
                        break
                    if data:
                        received += data
                        *complete, rest = bytes(received).split(b"\0")
                        received = bytearray(rest)
                        for answer in complete:
                            number, sep, text = answer.partition(b": ")
                            if sep and number.isdigit():
                                replies.setdefault(int(number), []).append(text)
                if mask & selectors.EVENT_WRITE and out and writable:
                    try:
                        sent = sock.send(out)
                        del out[:sent]
                    except BlockingIOError:
                        pass
                    except (BrokenPipeError, ConnectionResetError):
                        # clamd closed on us (a refused stream); read what it said.
                        writable = False
                        out.clear()
        except ScannerUnavailableError:
            raise
        except OSError as err:
            raise ScannerUnavailableError(
                f"talking to clamd at {self.where} failed: {err}", tool="clamd"
            ) from err
        finally:
            if body is not None and hasattr(body, "close"):
                body.close()
            selector.close()
            sock.close()
        return started, replies
