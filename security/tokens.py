"""HTTP bearer tokens of ``api_client`` principals, stored only as SHA-256 digests.

A token is ``iot_<43 URL-safe characters>`` (256 random bits), shown once by :meth:`add`.
Because tokens are long and random, one SHA-256 per lookup is as strong as a slow password
hash and keeps the per-request cost at a microsecond. Each token has a short public
``token_id`` (``tok_`` + 8 hex digits of its digest) for listing and revoking.

:meth:`TokenStore.principal_for` re-reads the file only when it changed on disk (size and
mtime), so a running server sees ``iotctl tokens add``/``revoke`` on its next request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from policy import PrincipalError, validate_principal_id
from security.errors import InvalidIdError, StoreError, TokenError
from security.files import locked, private_dir, read_json, write_json

__all__ = ["IssuedToken", "TokenInfo", "TokenStore"]

PREFIX = "iot_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    token_id: str
    principal: str
    added_at: str


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """The answer of :meth:`TokenStore.add`: the only time the token exists in clear."""

    info: TokenInfo
    token: str = field(repr=False)


class TokenStore:
    """Token digests and their principals, in ``path`` (mode 0600, atomic writes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._by_digest: dict[str, str] = {}

    def _load(self) -> dict[str, dict[str, str]]:
        tokens = read_json(self.path, "tokens").get("tokens", {})
        if not isinstance(tokens, dict) or not all(
            isinstance(entry, dict) and isinstance(entry.get("principal"), str)
            for entry in tokens.values()
        ):
            raise StoreError(f"the tokens file {self.path} is damaged")
        return tokens

    def add(self, principal: str) -> IssuedToken:
        """Issues a new token for ``principal`` (checking it is an api_client is the
        caller's job, since only the policy knows)."""
        try:
            validate_principal_id(principal)
        except PrincipalError as exc:
            raise InvalidIdError(str(exc)) from None
        token = PREFIX + secrets.token_urlsafe(32)
        digest = _digest(token)
        added_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        private_dir(self.path.parent)
        with locked(self.path):
            tokens = self._load()
            tokens[digest] = {"principal": principal, "added_at": added_at}
            write_json(self.path, {"tokens": tokens})
        return IssuedToken(TokenInfo(f"tok_{digest[:8]}", principal, added_at), token)

    def revoke(self, token_id_or_principal: str) -> tuple[TokenInfo, ...]:
        """Revokes one token (by ``tok_...`` id) or every token of a principal; returns them.

        TokenError when nothing matched.
        """
        private_dir(self.path.parent)
        with locked(self.path):
            tokens = self._load()
            gone = [
                digest
                for digest, entry in tokens.items()
                if f"tok_{digest[:8]}" == token_id_or_principal
                or entry["principal"] == token_id_or_principal
            ]
            if not gone:
                raise TokenError(f"no token has the id or principal {token_id_or_principal!r}")
            revoked = tuple(self._info(digest, tokens.pop(digest)) for digest in sorted(gone))
            write_json(self.path, {"tokens": tokens})
        return revoked

    @staticmethod
    def _info(digest: str, entry: dict[str, str]) -> TokenInfo:
        return TokenInfo(f"tok_{digest[:8]}", entry["principal"], entry.get("added_at", ""))

    def list(self) -> tuple[TokenInfo, ...]:
        """Every token, by principal then id; never the tokens themselves."""
        infos = (self._info(digest, entry) for digest, entry in self._load().items())
        return tuple(sorted(infos, key=lambda info: (info.principal, info.token_id)))

    def principal_for(self, token: str) -> str | None:
        """The principal a presented token belongs to, or None (unknown or revoked)."""
        if not token.startswith(PREFIX):
            return None
        try:
            stat = os.stat(self.path)
            stamp: tuple[int, int, int] | None = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._seen:
            self._by_digest = {digest: entry["principal"] for digest, entry in self._load().items()}
            self._seen = stamp
        return self._by_digest.get(_digest(token))
