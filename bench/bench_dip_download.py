"""Download of a 2 GiB DIP through ``GET /api/v1/dips/{id}/download``, against reading the file raw.

A ready DIP is a zip in the cache under the data root; the download streams it
(:mod:`preservation.access.delivery`: 4 MiB ``pread`` calls in a worker thread,
each handed to uvicorn). It should cost about what reading the file costs, and
the server's memory must not grow with the file. Figures:

* throughput, MB/s (10^6 bytes): the download against the same cached zip read
  raw in this process (``readinto`` a reused 4 MiB buffer), best of
  ``--repeat`` each, alternating, in two conditions: **warm** (the zip in the
  page cache) and **cold** (its pages dropped with ``posix_fadvise(DONTNEED)``
  before every read, raw or downloaded; ``fincore`` shows what stayed
  resident). Target: download / raw >= 0.8. The client reads the socket raw
  (``recv_into`` a reused 4 MiB buffer, HTTP/1.1 parsed by hand), so it is not
  the bottleneck; ``curl -o /dev/null`` is timed on the warm file beside it.
* memory: the server's ``VmRSS`` sampled every 50 ms during each download, and
  its ``VmHWM`` reset before the downloads, against its RSS when idle after a
  warm-up request: ``rss_growth_mib`` (target: flat, a few MiB, whatever the size).
* correctness: one download hashed (sha256 = the DIP's ETag), and one broken
  after a third of the file and resumed with ``Range: bytes=N-`` and
  ``If-Range``: a ``206`` whose bytes complete the first part to the same sha256.

Setup (untimed): a bag of ``--files`` random files totalling ``--size`` is
ingested by ``run_ingest`` into a fresh embedded data root (SQLite, emulated
tape, scanning off), a preservation DIP requested and recalled by
``run_batch``; then ``preservation api`` (uvicorn, as deployed) serves that
data root from a child process (:mod:`bench.apiserver`).

    python bench/bench_dip_download.py            # 2 GiB (4 x 512 MiB), best of 2
    python bench/bench_dip_download.py --quick    # 64 MiB, once
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.apiserver import ApiServer, cpu_seconds, peak_rss_kib, reset_peak_rss  # noqa: E402
from bench.bench_upload import RssSampler, size_arg  # noqa: E402

MB = 10**6
MIB = 1 << 20
BUFFER = 4 << 20
TENANT = "bench"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- setup ------------------------------------------------------------------------------------


def make_bag(work: Path, size: int, files: int) -> Path:
    """``files`` incompressible files of ``size / files`` bytes each, as a bagit bag."""
    import bagit  # type: ignore[import-untyped]

    bag = work / "bag"
    payload = bag / "films"
    payload.mkdir(parents=True)
    each = size // files
    block = bytearray(os.urandom(MIB))
    for i in range(files):
        with open(payload / f"reel-{i:02d}.bin", "wb") as out:
            left, n = each, 0
            while left:
                block[:16] = f"{i:08d}{n:08d}".encode()  # every MiB distinct, at memcpy speed
                piece = min(left, len(block))
                out.write(memoryview(block)[:piece])
                left -= piece
                n += 1
    bagit.make_bag(
        os.fspath(bag),
        {"Source-Organization": "Bench", "External-Identifier": "BENCH-DIP-DOWNLOAD"},
        checksums=["sha256"],
        processes=2,
    )
    return bag


def prepare(home: Path, bag: Path) -> dict[str, Any]:
    """Ingest, request a DIP, recall it; the DIP's id, size, etag, path and a consumer token."""
    from preservation.access import cache, service
    from preservation.access.recall import run_batch
    from preservation.catalog.database import session_scope
    from preservation.catalog.models import Role
    from preservation.catalog.service import ensure_tenant
    from preservation.config import Settings
    from preservation.context import open_context
    from preservation.ingest import run_ingest
    from preservation.tokens import create_token

    settings = Settings(home=home, database_url=None, broker_url=None, virus_scan=False)
    settings.ensure_dirs()
    ctx = open_context(settings)
    try:
        started = time.perf_counter()
        result = run_ingest(ctx, bag, tenant=TENANT)
        if result.state != "committed" or not result.aip_id:
            raise SystemExit(f"ingest ended {result.state}: {result.problems[:3]}")
        ingest_s = time.perf_counter() - started
        log(f"  ingested in {ingest_s:.1f} s")
        with session_scope(ctx.sessions) as s:
            dip_id = service.request_dip(
                s, aip_id=str(result.aip_id), tenant_id=TENANT, requested_by="bench"
            ).dip_id
        started = time.perf_counter()
        report = run_batch(ctx, dip_ids=[dip_id])
        recall_s = time.perf_counter() - started
        if report.ready != [dip_id]:
            raise SystemExit(f"the DIP was not built: {report.failed}")
        log(f"  recalled and packed in {recall_s:.1f} s")
        with session_scope(ctx.sessions) as s:
            view = service.get_dip(s, dip_id, TENANT)
            ensure_tenant(s, TENANT, "Bench")
            token = create_token(s, role=Role.CONSUMER, tenant_id=TENANT, label="bench").secret
        return {
            "dip_id": dip_id,
            "size": view.size,
            "etag": view.etag,
            "path": cache.zip_path(settings, dip_id),
            "token": token,
            "ingest_seconds": round(ingest_s, 1),
            "recall_seconds": round(recall_s, 1),
        }
    finally:
        ctx.close()  # the drives and locks go back before the server opens the data root


# -- the page cache ---------------------------------------------------------------------------


def drop_pages(path: Path) -> None:
    """Drop the file's pages from the page cache (clean pages only: it was synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_bytes(path: Path) -> int | None:
    """The file's bytes in the page cache, from util-linux ``fincore``; None without it."""
    if shutil.which("fincore") is None:
        return None
    done = subprocess.run(
        ["fincore", "--bytes", "--noheadings", "--output", "RES", os.fspath(path)],
        capture_output=True,
        text=True,
    )
    try:
        return int(done.stdout.split()[0])
    except (IndexError, ValueError):
        return None


# -- the baseline -----------------------------------------------------------------------------


def read_raw(path: Path, buf: bytearray) -> float:
    """Seconds to read the whole file into ``buf``, 4 MiB at a time."""
    view = memoryview(buf)
    total = 0
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(view):
            total += n
    seconds = time.perf_counter() - started
    if total != path.stat().st_size:
        raise SystemExit(f"read {total} bytes of {path}")
    return seconds


# -- the client -------------------------------------------------------------------------------


class Download:
    """One ``GET`` on a raw socket: the body ``recv_into`` a reused buffer, optionally hashed."""

    def __init__(self, port: int, target: str, headers: dict[str, str]) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = b""
        while b"\r\n\r\n" not in head:
            more = self.sock.recv(65536)
            if not more:
                raise SystemExit(f"the server closed the connection: {head[:200]!r}")
            head += more
        head, _, self.early = head.partition(b"\r\n\r\n")
        status_line, *fields = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, v in (f.split(":", 1) for f in fields)}
        self.length = int(self.headers.get("content-length", "0"))

    def body(self, buf: bytearray, *, digest: Any = None, limit: int | None = None) -> int:
        """Read the body (or its first ``limit`` bytes); the bytes read."""
        want = self.length if limit is None else min(limit, self.length)
        got = len(self.early[:want])
        if digest is not None:
            digest.update(self.early[:want])
        view = memoryview(buf)
        while got < want:
            n = self.sock.recv_into(view, min(len(view), want - got))
            if not n:
                break
            if digest is not None:
                digest.update(view[:n])
            got += n
        return got

    def close(self) -> None:
        self.sock.close()


def download(
    port: int,
    target: str,
    token: str,
    buf: bytearray,
    *,
    extra: dict[str, str] | None = None,
    digest: Any = None,
    limit: int | None = None,
) -> tuple[float, Download, int]:
    started = time.perf_counter()
    d = Download(port, target, {"Authorization": f"Bearer {token}", **(extra or {})})
    try:
        got = d.body(buf, digest=digest, limit=limit)
    finally:
        d.close()
    return time.perf_counter() - started, d, got


def timed_download(
    port: int, target: str, token: str, buf: bytearray, size: int, pid: int
) -> dict[str, Any]:
    sampler = RssSampler(pid)
    cpu0, client0 = cpu_seconds(pid), time.process_time()
    sampler.start()
    seconds, d, got = download(port, target, token, buf)
    samples = sampler.stop()
    if d.status != 200 or got != size:
        raise SystemExit(f"download: HTTP {d.status}, {got} of {size} bytes")
    return {
        "seconds": seconds,
        "peak_rss_kib": max(samples),
        "server_cpu_s": cpu_seconds(pid) - cpu0,
        "client_cpu_s": time.process_time() - client0,
        "rss_samples": len(samples),
    }


def curl_seconds(url: str, token: str, size: int) -> float | None:
    if shutil.which("curl") is None:
        return None
    done = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}", "-w",
         "%{size_download} %{time_total}", url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    got, seconds = done.stdout.split()
    if int(got) != size:
        raise SystemExit(f"curl: {got} of {size} bytes")
    return float(seconds)


def sendfile_ceiling(path: Path, buf: bytearray, repeat: int) -> float:
    """Best seconds for the client to take the warm file from a bare ``sendfile`` server.

    No framework, no copy into user space on the sending side: what loopback
    TCP and this client manage, the ceiling any HTTP server here can reach.
    """
    size = path.stat().st_size
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        for _ in range(repeat):
            conn, _ = listener.accept()
            with conn, open(path, "rb") as f:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
                offset = 0
                while offset < size:
                    offset += os.sendfile(conn.fileno(), f.fileno(), offset, size - offset)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    seconds = []
    try:
        for _ in range(repeat):
            took, d, got = download(port, "/", "-", buf)
            if got != size:
                raise SystemExit(f"sendfile ceiling: {got} of {size} bytes")
            seconds.append(took)
    finally:
        thread.join(10)
        listener.close()
    return min(seconds)


# -- main -------------------------------------------------------------------------------------


def measure(server: ApiServer, dip: dict[str, Any], repeat: int, buf: bytearray) -> dict[str, Any]:
    """Raw reads and downloads, warm then cold; the server's memory throughout."""
    path: Path = dip["path"]
    size: int = dip["size"]
    target = f"/api/v1/dips/{dip['dip_id']}/download"
    token = dip["token"]
    pid = server.pid

    # Warm-up: the first request opens the catalogue and imports what it needs.
    _, d, _ = download(server.port, target, token, buf, extra={"Range": "bytes=0-1023"})
    if d.status != 206:
        raise SystemExit(f"warm-up download: HTTP {d.status}")
    idle = RssSampler(pid)
    idle.start()
    time.sleep(1.0)
    rss_before = max(idle.stop())
    hwm_reset = reset_peak_rss(pid)

    out: dict[str, Any] = {}
    peaks: list[int] = []
    for condition in ("warm", "cold"):
        raw: list[float] = []
        runs: list[dict[str, Any]] = []
        resident: list[int | None] = []
        if condition == "warm":
            read_raw(path, buf)  # into the page cache
        for _ in range(repeat):
            if condition == "cold":
                drop_pages(path)
                resident.append(resident_bytes(path))
            raw.append(read_raw(path, buf))
            if condition == "cold":
                drop_pages(path)
                resident.append(resident_bytes(path))
            runs.append(timed_download(server.port, target, token, buf, size, pid))
            peaks.append(runs[-1]["peak_rss_kib"])
            log(
                f"  {condition}: raw {size / MB / raw[-1]:,.0f} MB/s, "
                f"download {size / MB / runs[-1]['seconds']:,.0f} MB/s"
            )
        best = min(runs, key=lambda r: r["seconds"])
        raw_mbps = size / MB / min(raw)
        dl_mbps = size / MB / best["seconds"]
        out[condition] = {
            "raw_read_s": [round(s, 3) for s in raw],
            "download_s": [round(r["seconds"], 3) for r in runs],
            "raw_MBps": round(raw_mbps, 1),
            "download_MBps": round(dl_mbps, 1),
            "ratio": round(dl_mbps / raw_mbps, 3),
            "meets_target": dl_mbps / raw_mbps >= 0.8,
            "server_cpu_s": round(best["server_cpu_s"], 2),
            "client_cpu_s": round(best["client_cpu_s"], 2),
        }
        if condition == "cold":
            out[condition]["resident_bytes_after_drop"] = resident
    hwm = peak_rss_kib(pid) if hwm_reset else None

    read_raw(path, buf)  # warm again, for the cross-check and the checks
    curl = [curl_seconds(server.base + target, token, size) for _ in range(repeat)]
    if curl[0] is not None:
        best_curl = min(c for c in curl if c is not None)
        out["warm"]["curl_s"] = curl
        out["warm"]["curl_MBps"] = round(size / MB / best_curl, 1)

    ceiling = sendfile_ceiling(path, buf, repeat)
    out["warm"]["client_ceiling_sendfile_MBps"] = round(size / MB / ceiling, 1)
    # What the server itself costs: its download against the best any server does here.
    out["warm"]["ratio_over_ceiling"] = round(ceiling / min(out["warm"]["download_s"]), 3)

    peak = max([*peaks, hwm or 0])
    out["memory"] = {
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_peak_sampled_mib": round(max(peaks) / 1024, 1),
        "vmhwm_mib": round(hwm / 1024, 1) if hwm else None,
        "rss_growth_mib": round((peak - rss_before) / 1024, 1),
        "downloaded_mib": round(len(peaks) * size / MIB, 1),
    }
    out["checks"] = verify(server.port, target, token, buf, size, dip["etag"])
    return out


def verify(
    port: int, target: str, token: str, buf: bytearray, size: int, etag: str
) -> dict[str, Any]:
    """The bytes are the DIP's (sha256 = ETag), and a broken download resumes to the same."""
    digest = hashlib.sha256()
    _, d, got = download(port, target, token, buf, digest=digest)
    whole_ok = d.status == 200 and got == size and digest.hexdigest() == etag
    header_etag = d.headers.get("etag", "").strip('"')

    cut = size // 3
    digest = hashlib.sha256()
    _, first, got_first = download(port, target, token, buf, digest=digest, limit=cut)
    _, rest, got_rest = download(
        port,
        target,
        token,
        buf,
        extra={"Range": f"bytes={cut}-", "If-Range": f'"{etag}"'},
        digest=digest,
    )
    resumed_ok = (
        first.status == 200
        and got_first == cut
        and rest.status == 206
        and rest.headers.get("content-range") == f"bytes {cut}-{size - 1}/{size}"
        and got_first + got_rest == size
        and digest.hexdigest() == etag
    )
    return {
        "sha256_equals_etag": whole_ok,
        "etag_header_equals_dip_etag": header_etag == etag,
        "resumed_at_byte": cut,
        "resumed_status": rest.status,
        "resumed_content_range": rest.headers.get("content-range"),
        "resumed_concatenation_matches": resumed_ok,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=size_arg, default=2 << 30, help="payload (default 2GiB)")
    parser.add_argument("--files", type=int, default=4, help="payload files")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each contender")
    parser.add_argument("--workdir", type=Path, default=None, help="a temporary folder in it")
    parser.add_argument("--quick", action="store_true", help="64 MiB, once")
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.repeat = 64 << 20, 1

    with tempfile.TemporaryDirectory(prefix="bench-dip-download-", dir=args.workdir) as tmp:
        work = Path(tmp)
        home = work / "var"
        log(f"a bag of {args.files} files, {args.size / MIB:,.0f} MiB")
        bag = make_bag(work, args.size, args.files)
        dip = prepare(home, bag)
        shutil.rmtree(bag, ignore_errors=True)
        os.sync()  # the zip's pages clean, so that they can be dropped
        env = {k: v for k, v in os.environ.items() if not k.startswith("PRESERVATION_")}
        env.update(PRESERVATION_HOME=str(home), PRESERVATION_VIRUS_SCAN="false")
        server = ApiServer(env, work / "api.log")
        try:
            server.wait_ready()
            figures = measure(server, dip, args.repeat, bytearray(BUFFER))
        finally:
            server.stop()

    checks = figures.pop("checks")
    result = {
        "benchmark": "dip_download",
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "payload_bytes": args.size,
        "files": args.files,
        "zip_bytes": dip["size"],
        "repeat": args.repeat,
        "ingest_seconds": dip["ingest_seconds"],
        "recall_seconds": dip["recall_seconds"],
        **figures,
        "checks": checks,
    }
    print(json.dumps(result, indent=2))
    ok = checks["sha256_equals_etag"] and checks["resumed_concatenation_matches"]
    if not ok:
        log("the downloaded bytes do not match the DIP's ETag: see checks")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
