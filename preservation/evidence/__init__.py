"""Evidence of existence and integrity for the long term: RFC 4998 records over RFC 3161 stamps.

``hashtree`` builds the hash trees that let one time-stamp cover a whole batch of
versions; ``records`` writes, renews and verifies Evidence Records; ``tsa`` asks a
Time-Stamping Authority for tokens and checks them against the trusted
certificates; ``loopback_tsa`` runs a real TSA (``openssl ts``) on loopback for
tests, benchmarks and demonstrations. Import the modules themselves: this
package loads nothing, so a process that never stamps never pays for the
cryptography.
"""

__all__: list[str] = []
