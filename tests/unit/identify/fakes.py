"""A hand-written ``FormatEngine`` whose behaviour the file name chooses.

The worker pool's failure handling (timeouts, a worker that ignores its alarm,
a worker that dies) must be tested in real worker processes, where a monkeypatch
in the test process would not reach; the pool loads this engine by dotted path.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path

from preservation.identify.interfaces import Identification


class NamedBehaviourEngine:
    """``slow``: sleeps (an alarm can stop it); ``stuck``: blocks SIGALRM, then sleeps
    (only the parent can stop it); ``crash``: the process exits; anything else: fake/1."""

    name = "fake"
    version = "0"
    signature_release = "fake-signatures-1"

    def identify_batch(self, paths: Sequence[Path]) -> list[Identification]:
        return [self._one(Path(p)) for p in paths]

    def _one(self, path: Path) -> Identification:
        if "slow" in path.name:
            time.sleep(60)
        elif "stuck" in path.name:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        elif "crash" in path.name:
            os._exit(3)
        return Identification(
            path=path,
            puids=("fake/1",),
            format_name="Fake",
            format_version=None,
            mime=None,
            basis="signature",
            engine=self.name,
            engine_version=self.version,
            signature_release=self.signature_release,
        )


ENGINE = f"{__name__}:NamedBehaviourEngine"
