"""A whole pipeline on one machine: Celery workers per queue, the watcher, with real
Redis and PostgreSQL. Used by the distributed tests and ``bench/bench_distributed.py``.

Each process runs in its own session (process group), so a failpoint's SIGKILL
takes down a worker and its identification pool together, exactly as an
out-of-memory kill or a power cut would, and nothing else.

Workers are started as in ``compose.yaml``: the ingest worker with the solo
pool (its process owns the identification pool), a tape worker per site with
one prefork child per drive, so each drive takes one task at a time.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from preservation.catalog import SIP, CopyStatus, SIPState, TapeCopy, make_engine, make_sessionmaker
from preservation.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "bags" / "sample-collection"


@dataclass
class Cluster:
    home: Path
    database_url: str
    broker_url: str
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = f"ptest-{uuid.uuid4().hex[:8]}"
        self.logs = self.home / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(self.database_url)
        self.sessions = make_sessionmaker(self.engine)

    def env(self, **more: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PRESERVATION_HOME=str(self.home),
            PRESERVATION_DATABASE_URL=self.database_url,
            PRESERVATION_BROKER_URL=self.broker_url,
            PRESERVATION_RESULT_BACKEND=self.broker_url,
            PRESERVATION_REDIS_KEY_PREFIX=self.prefix,
            PRESERVATION_BROKER_VISIBILITY_TIMEOUT="6",
            PRESERVATION_QUIESCENT_SECONDS="1",
            PRESERVATION_STALL_SECONDS="120",
            PRESERVATION_IDENTIFY_WORKERS="1",
            PRESERVATION_FAILPOINT_DIR=str(self.home),
        )
        env.update(self.extra_env)
        env.update(more)
        return env

    def start(self, name: str, argv: list[str], **env: str) -> subprocess.Popen[bytes]:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the process
        proc = subprocess.Popen(
            argv,
            env=self.env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        self.procs[name] = proc
        return proc

    def start_worker(
        self, name: str, queue: str, *, concurrency: int = 0, **env: str
    ) -> subprocess.Popen[bytes]:
        """A Celery worker on ``queue``: solo pool, or ``concurrency`` prefork children."""
        pool = ["--pool", "solo"]
        if concurrency:
            pool = ["--pool", "prefork", "--concurrency", str(concurrency)]
        return self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "workers",
                "worker",
                "-Q",
                queue,
                *pool,
                "-n",
                f"{name}-{self.prefix}@%h",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "INFO",
            ],
            **env,
        )

    def start_tape_worker(self, site: str, **env: str) -> subprocess.Popen[bytes]:
        """``tape-a`` on ``store.site-a`` (and so on): one prefork child per drive."""
        default = Settings.model_fields["tape_drives_per_site"].default
        drives = int(self.env(**env).get("PRESERVATION_TAPE_DRIVES_PER_SITE", default))
        name = f"tape-{site.rsplit('-', 1)[-1]}"
        return self.start_worker(name, f"store.{site}", concurrency=drives, **env)

    def start_all(self, **ingest_env: str) -> None:
        self.start_worker("ingest", "ingest", **ingest_env)
        self.start_tape_worker("site-a")
        self.start_tape_worker("site-b")
        self.start_watcher()

    def start_watcher(self) -> None:
        self.start(
            "watcher",
            [sys.executable, "-m", "preservation.cli", "watch", "--interval", "0.5"],
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait(timeout=30)

    def stop(self) -> None:
        for name in list(self.procs):
            self.kill(name)
        self.engine.dispose()
        import redis

        try:
            client = redis.Redis.from_url(self.broker_url, socket_connect_timeout=2)
            keys = list(client.scan_iter(f"{self.prefix}:*", count=1000))
            if keys:
                client.delete(*keys)
        except redis.RedisError:
            pass  # a private broker that is already gone

    def drop_bag(self, tenant: str, name: str, source: Path = SAMPLE) -> Path:
        """Copy a bag in next to the folder, then move it in: it appears whole."""
        folder = self.home / "ingest" / tenant
        folder.mkdir(parents=True, exist_ok=True)
        tmp = self.home / "incoming" / name
        shutil.copytree(source, tmp)
        os.rename(tmp, folder / name)
        return folder / name

    def counts(self) -> dict[str, int]:
        with self.sessions() as s:
            return {
                str(state.value): n
                for state, n in s.execute(select(SIP.state, func.count()).group_by(SIP.state))
            }

    def verified_copies(self) -> dict[int, int]:
        with self.sessions() as s:
            rows = s.execute(
                select(TapeCopy.aip_version_id, func.count())
                .where(TapeCopy.status == CopyStatus.VERIFIED)
                .group_by(TapeCopy.aip_version_id)
            )
            return dict(rows.all())  # type: ignore[arg-type]

    def wait_for(
        self, done: Callable[[], bool], *, timeout: float, what: str, poll: float = 0.5
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            for name, proc in self.procs.items():
                if proc.poll() is not None and name != "watcher-once":
                    pass  # a killed worker is the test's business; it restarts it
            time.sleep(poll)
        tails = {
            p.name: p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("*.log"))
        }
        raise AssertionError(f"timed out waiting for {what}; counts={self.counts()}\n{tails}")

    def wait_committed(self, n: int, *, timeout: float = 180) -> None:
        self.wait_for(
            lambda: self.counts().get(SIPState.COMMITTED.value, 0) >= n,
            timeout=timeout,
            what=f"{n} committed SIPs",
        )
