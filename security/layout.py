"""Where security state lives: one private folder under the dev stack's state dir.

``<state dir>/security/`` (mode 0700) holds ``secrets.json`` (service passwords),
``devices.json`` (device password hashes), ``tokens.json`` (HTTP token hashes) and ``tls/``
(the local CA and the broker's certificate). Every file in it is mode 0600.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["SecurityLayout"]


@dataclass(frozen=True, slots=True)
class SecurityLayout:
    """Paths of the security state; creating nothing until a store writes."""

    root: Path

    @classmethod
    def under(cls, state_dir: Path) -> SecurityLayout:
        return cls(state_dir / "security")

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def devices_file(self) -> Path:
        return self.root / "devices.json"

    @property
    def tokens_file(self) -> Path:
        return self.root / "tokens.json"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def apply_lock(self) -> Path:
        """Held while the policy is applied, so two applies never interleave."""
        return self.root / "apply"
