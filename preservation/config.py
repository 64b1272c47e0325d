"""One Settings object for the whole system, read from ``PRESERVATION_*`` variables.

Everything the embedded default needs lives under one data root
(``PRESERVATION_HOME``, default ``./var``) so that a newcomer can delete one folder
to start over, and an operator can point every component at one volume.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRESERVATION_", extra="ignore")

    home: Path = Field(default=Path("./var"), description="Data root of the embedded default.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default is SQLite under the data root."
    )
    broker_url: str | None = Field(
        default=None, description="Celery broker (Redis). None runs every stage in-process."
    )
    result_backend: str | None = None
    # With a broker: the callable that starts a received SIP's workflow
    # (preservation/submission.py); the library never imports workers/ itself.
    submitter: str = "workers.tasks:submit"
    # With a broker: the callable that stores and commits a new AIP version (versions.py).
    version_submitter: str = "workers.tasks:submit_version"
    # With a broker: the callable that queues an API-requested audit on the audit worker.
    audit_submitter: str = "workers.audit:submit_audit"
    # With a broker: the callable that queues a migration request (one task per AIP).
    migration_submitter: str = "workers.tasks:submit_migration"
    # With a broker: the callable that queues a batch of DIP recalls on the access queue.
    dip_submitter: str = "workers.tasks:submit_dip"
    # With a broker: the callable that queues `repair` after a recall found a bad copy.
    repair_submitter: str = "workers.audit:submit_repair"
    # How long a task taken by a worker that then died stays invisible before
    # Redis hands it to another worker. Longer than the longest task.
    broker_visibility_timeout: int = 6 * 3600 + 600
    redis_key_prefix: str = "preservation"

    # The largest body POST /api/v1/sips takes; what arrives past it is deleted at once.
    max_upload_bytes: int = 64 * 2**30
    # Where the API's uploads and the embedded runner's SIPs get a thread (no broker).
    api_embedded_workers: int = 1

    # Serialised bag safety limits (archive bombs).
    unpack_max_bytes: int = 1 << 40
    unpack_max_members: int = 1_000_000
    unpack_max_ratio: float = 200.0

    # Identification.
    identify_workers: int = 0  # 0: one per core
    identify_timeout: float = 30.0
    identify_engine: str = "fido"

    # Characterisation and format validation (preservation/characterise/): which tools
    # run for which PRONOM id. None: the default registry shipped with the package.
    characterisation_registry: Path | None = None
    # Files handed to one run of a tool (one mediainfo process, one exiftool batch).
    characterisation_batch_size: int = 1000

    # Format migration (preservation/migrate/): the policy file (None: the default
    # policy shipped with the package), and how many tool runs go at once per AIP.
    migration_policy: Path | None = None
    migration_workers: int = 2

    # Access (preservation/access/): DIP requests wait this long for others to share
    # their recall batch (one mount per cartridge per batch); the built zips stay in
    # the cache under the data root this long, and the cache keeps at most this many
    # bytes (the oldest go first).
    recall_window_seconds: float = 30.0
    dip_ttl: float = 7 * 86400.0
    dip_cache_bytes: int = 2 * 10**12

    # Virus scanning (preservation/scan/). A tenant's rule `virus_scan: false` turns it
    # off for that tenant; on, a SIP whose scanner cannot be reached waits, unscanned.
    virus_scan: bool = True
    # clamd's socket: a path (unix socket) or tcp://host:port. None: clamscan, run
    # once per batch with the signatures in clamav_db.
    clamd_socket: str | None = None
    # The signature database clamscan loads (a folder of .cvd/.cld/.hdb/.ndb files).
    # None: ClamAV's own default (/var/lib/clamav, kept by freshclam).
    clamav_db: Path | None = None

    # Tape.
    # Deprecated: no longer chooses anything; real libraries are sites of the site
    # file. Any value but this default, without a site file, is refused at start-up.
    tape_backend: str = "preservation.storage.emulator:EmulatedTapeDevice"
    # Which library each site has, emulated or a real SCSI one (mtx + st): a JSON file
    # checked against schemas/sites.schema.json (preservation/storage/siteconfig.py).
    # None: every site is emulated, as the tape_* settings below describe.
    site_file: Path | None = None
    tape_capacity: int = 18 * 10**12  # LTO-9 native
    # The LTO generation of the blank cartridges an emulated library is stocked
    # with (the barcode's last two characters: L7, L8, L9, ...). Changing it is
    # how an emulated site gets a new generation's cartridges for `media migrate`:
    # the old ones stay, new ones are added beside them.
    tape_media: str = "L9"
    tape_cartridges_per_site: int = 8
    tape_drives_per_site: int = 2
    sites: tuple[str, ...] = ("site-a", "site-b")
    # A process gives its drives back (volumes unmounted cleanly) after this long
    # without tape work, so audits, recalls and repairs elsewhere can mount.
    tape_idle_unmount_seconds: float = 60.0
    # How often beat starts a fixity audit (workers/celery.py), and what one such
    # run may read: the stalest cartridges first, so bounded nightly runs go
    # round the whole archive (None: no bound; the run reads everything).
    audit_interval_seconds: float = 86400.0
    audit_max_cartridges: int | None = None
    audit_max_hours: float | None = 8.0

    # Legal value (preservation/evidence/). The tape journal is cut, time-stamped
    # and written this often by beat (and after each embedded ingest run); at most
    # a day, as the journal's promise is "on tape within a day".
    journal_interval_seconds: float = Field(default=3600.0, gt=0, le=86400.0)
    # An RFC 3161 Time-Stamping Authority (None: the chain is kept but not stamped,
    # and `status` says so), and a PEM file of its certificate chain (CA and TSA
    # certificates, concatenated), with which every token is checked as it arrives
    # and every record when verified. Add the new CA here when the TSA changes.
    tsa_url: str | None = None
    tsa_certs: Path | None = None
    tsa_timeout: float = 10.0

    # The console (preservation/console/): the key that signs session cookies. Every
    # API replica must share it; unset, one is made in <home>/console.key.
    console_secret: str | None = Field(default=None, repr=False)

    # Hot folders.
    quiescent_seconds: float = 5.0
    # A directory bag whose Payload-Oxum does not match what is on disk and that has
    # not changed for this long is taken anyway, and rejected by validation with its
    # report (preservation/hotfolder.py). None: 10 x quiescent_seconds.
    incomplete_bag_seconds: float | None = None
    keep_sips: bool = False  # the default for tenants whose rules do not say
    # Per-tenant archiving rules (preservation/rules.py); None: <home>/archiving-rules.json.
    rules_file: Path | None = None
    # A SIP whose row has not moved for this long is handed to the workers again
    # (its messages were lost: a broker restarted empty, a chord failed). Longer
    # than the longest stage; every stage is idempotent, so a resubmission is safe.
    stall_seconds: float = 3600.0
    # A stage's lease on its SIP (preservation/lease.py), renewed every third of
    # this while the stage runs; a dead holder's lease frees after this long.
    lease_seconds: float = 120.0
    # How long the embedded `ingest` waits, retrying with backoff, for a site
    # that is down before it leaves the SIP pending (never committed with one
    # copy); `watch`, `repair` or `resume` finish it once the site is back.
    site_wait_seconds: float = 300.0

    production: bool = False

    # The XSDs copied into every AIP and used to validate METS; the repo's schemas/.
    schemas_dir: Path = Field(default=Path(__file__).resolve().parent.parent / "schemas")

    @property
    def home_dir(self) -> Path:
        return self.home.resolve()

    @property
    def ingest_dir(self) -> Path:
        return self.home_dir / "ingest"

    @property
    def rejected_dir(self) -> Path:
        return self.home_dir / "rejected"

    @property
    def staging_dir(self) -> Path:
        return self.home_dir / "staging"

    @property
    def tape_dir(self) -> Path:
        return self.home_dir / "tape"

    @property
    def dip_dir(self) -> Path:
        """The DIP cache: built zips wait here for their download until they expire."""
        return self.home_dir / "dips"

    @property
    def catalog_url(self) -> str:
        if self.database_url:
            return self.database_url
        # Quoted: SQLAlchemy unquotes the path, and a "%41" or "?" in a folder name
        # would otherwise put the catalogue somewhere else than in the data root.
        return f"sqlite:///{quote(str(self.home_dir / 'catalog.sqlite'))}"

    def ensure_dirs(self) -> None:
        for d in (
            self.home_dir,
            self.ingest_dir,
            self.rejected_dir,
            self.staging_dir,
            self.tape_dir,
        ):
            d.mkdir(parents=True, exist_ok=True)


def get_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
