"""Generated passwords of service principals (admin, gateway, streams, simulator, ...).

One JSON file, mode 0600, in a 0700 folder. Each principal gets a random password once and
keeps it until someone deletes it; alongside it the Mosquitto ``$7$`` hash, computed once so
that regenerating the broker's password file from the same inputs gives the same bytes.
Devices never have an entry here: their passwords are shown once and only hashes are kept
(:mod:`~security.devices`).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from policy import PrincipalError, hash_password, validate_principal_id, verify_password
from security.errors import InvalidIdError, StoreError
from security.files import locked, private_dir, read_json, write_json

__all__ = ["Credential", "SecretStore", "new_password"]

_MASK = "********"


def new_password() -> str:
    """A random password: 24 bytes of entropy as 32 URL-safe characters.

    The alphabet (``A-Z a-z 0-9 - _``) needs no quoting in JAAS, Kafka's ``--add-scram``,
    Mosquitto's password file or a shell.
    """
    return secrets.token_urlsafe(24)


@dataclass(frozen=True, slots=True)
class Credential:
    """A principal's password and its Mosquitto hash; printing it shows neither."""

    principal: str
    password: str = field(repr=False)
    mosquitto_hash: str = field(repr=False)

    @property
    def masked(self) -> str:
        return _MASK

    def __str__(self) -> str:
        return f"{self.principal}:{_MASK}"


class SecretStore:
    """The passwords of service principals, kept in ``path`` (see the module docstring).

    Safe for concurrent processes: writes happen under a file lock and are atomic.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, Credential]:
        data = read_json(self.path, "secrets")
        found: dict[str, Credential] = {}
        for name, entry in dict(data.get("principals", {})).items():
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("password"), str)
                or not isinstance(entry.get("mosquitto_hash"), str)
                or not verify_password(entry["password"], entry["mosquitto_hash"])
            ):
                raise StoreError(f"the secrets file {self.path} has a damaged entry {name!r}")
            found[name] = Credential(name, entry["password"], entry["mosquitto_hash"])
        return found

    def all(self) -> dict[str, Credential]:
        """Every stored credential, by principal id."""
        return self._load()

    def get(self, principal: str) -> Credential | None:
        return self._load().get(principal)

    def ensure(self, principals: Iterable[str], *, dry_run: bool = False) -> dict[str, Credential]:
        """The credentials of ``principals``, generating the missing ones.

        New passwords are saved before this returns, unless ``dry_run``: then they are only
        returned (and a later call generates different ones). Ids are validated first, so
        nothing is saved when one is invalid.
        """
        wanted = sorted(set(principals))
        for principal in wanted:
            try:
                validate_principal_id(principal)
            except PrincipalError as exc:
                raise InvalidIdError(str(exc)) from None
        if dry_run:
            return self._with_missing(self._load(), wanted)
        private_dir(self.path.parent)
        with locked(self.path):
            stored = self._load()
            result = self._with_missing(stored, wanted)
            if any(name not in stored for name in wanted):
                stored.update(result)
                self._save(stored)
        return result

    def put(self, principal: str, password: str) -> bool:
        """Stores ``password`` for ``principal`` (a deployment that hands its services their
        passwords itself, e.g. from compose's ``.env``); True when it was new or different."""
        try:
            validate_principal_id(principal)
        except PrincipalError as exc:
            raise InvalidIdError(str(exc)) from None
        if not password:
            raise StoreError(f"the password given for {principal!r} is empty")
        private_dir(self.path.parent)
        with locked(self.path):
            stored = self._load()
            current = stored.get(principal)
            if current is not None and current.password == password:
                return False
            stored[principal] = Credential(principal, password, hash_password(password))
            self._save(stored)
        return True

    def commit(self, credentials: Mapping[str, Credential]) -> tuple[str, ...]:
        """Saves those of ``credentials`` (from ``ensure(..., dry_run=True)``) not yet stored;
        returns their names. StoreError if another process stored a different one meanwhile.
        """
        private_dir(self.path.parent)
        with locked(self.path):
            stored = self._load()
            new = sorted(name for name in credentials if name not in stored)
            for name, credential in credentials.items():
                if name in stored and stored[name] != credential:
                    raise StoreError(
                        f"the password of {name!r} changed while the policy was applied; "
                        "run the command again"
                    )
            if new:
                stored.update({name: credentials[name] for name in new})
                self._save(stored)
        return tuple(new)

    @staticmethod
    def _with_missing(stored: dict[str, Credential], wanted: list[str]) -> dict[str, Credential]:
        result = {}
        for name in wanted:
            credential = stored.get(name)
            if credential is None:
                password = new_password()
                credential = Credential(name, password, hash_password(password))
            result[name] = credential
        return result

    def _save(self, credentials: dict[str, Credential]) -> None:
        write_json(
            self.path,
            {
                "principals": {
                    name: {"password": c.password, "mosquitto_hash": c.mosquitto_hash}
                    for name, c in sorted(credentials.items())
                }
            },
        )
