"""The schemas kept in the repository: ``schemas/subjects.yaml`` plus each family's history.

Layout::

    schemas/subjects.yaml          subject -> family, compatibility mode
    schemas/<family>/v1.avsc       first published version
    schemas/<family>/v2.avsc       ... every later version, never edited once published

Loading is all-or-nothing: a missing family, a gap in the version numbers, a stray ``.avsc``
file, an unknown mode or a schema that does not parse raises ``CatalogError`` naming the file.
A loaded catalog is immutable.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contracts.avro.compatibility import (
    CompatibilityMode,
    CompatibilityResult,
    check_compatibility,
)
from contracts.avro.errors import CatalogError, SchemaParseError
from contracts.avro.schema import AvroSchema, parse_schema

__all__ = ["HistoryCheck", "SchemaCatalog", "SchemaVersion", "Subject", "default_schemas_dir"]

SUBJECTS_FILE = "subjects.yaml"
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def default_schemas_dir() -> Path:
    """``schemas/`` of the source tree this package was loaded from."""
    return Path(__file__).resolve().parents[2] / "schemas"


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """Version ``version`` (1-based) of a subject, read from ``path``."""

    subject: str
    version: int
    path: Path
    schema: AvroSchema


@dataclass(frozen=True, slots=True)
class HistoryCheck:
    """Result of checking one version against its predecessors under the subject's mode."""

    subject: str
    version: int
    result: CompatibilityResult

    @property
    def compatible(self) -> bool:
        return self.result.compatible


@dataclass(frozen=True, slots=True)
class Subject:
    """A subject with its family, compatibility mode and full history (oldest first)."""

    name: str
    family: str
    compatibility: CompatibilityMode
    versions: tuple[SchemaVersion, ...]

    @property
    def latest(self) -> SchemaVersion:
        return self.versions[-1]

    def check(self) -> tuple[HistoryCheck, ...]:
        """Checks every version from v2 on against the versions before it."""
        schemas = [v.schema for v in self.versions]
        return tuple(
            HistoryCheck(
                self.name,
                index + 1,
                check_compatibility(schemas[index], schemas[:index], self.compatibility),
            )
            for index in range(1, len(schemas))
        )


class SchemaCatalog:
    """All subjects of a ``schemas/`` directory; see the module docstring for the layout."""

    __slots__ = ("_root", "_subjects")

    def __init__(self, root: Path, subjects: Mapping[str, Subject]) -> None:
        self._root = root
        self._subjects = dict(subjects)

    @classmethod
    def load(cls, root: Path | str | None = None) -> SchemaCatalog:
        """Reads and validates ``root`` (default: :func:`default_schemas_dir`)."""
        root = Path(root) if root is not None else default_schemas_dir()
        config = _read_yaml(root / SUBJECTS_FILE)
        default_mode = _mode(config.get("default_compatibility", "BACKWARD"), "default")
        entries = config.get("subjects")
        if not isinstance(entries, dict) or not entries:
            raise CatalogError(f"{root / SUBJECTS_FILE}: 'subjects' must be a non-empty mapping")
        subjects: dict[str, Subject] = {}
        for name, entry in entries.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("family"), str):
                raise CatalogError(f"{root / SUBJECTS_FILE}: subject {name!r} needs a 'family'")
            mode = _mode(entry.get("compatibility", default_mode), str(name))
            family = entry["family"]
            versions = tuple(
                SchemaVersion(str(name), number, path, _read_schema(path))
                for number, path in _version_files(root / family)
            )
            subjects[str(name)] = Subject(str(name), family, mode, versions)
        return cls(root, subjects)

    @property
    def root(self) -> Path:
        return self._root

    @property
    def subject_names(self) -> tuple[str, ...]:
        """Subject names, sorted."""
        return tuple(sorted(self._subjects))

    def subject(self, name: str) -> Subject:
        """The subject called ``name``; ``CatalogError`` if there is none."""
        try:
            return self._subjects[name]
        except KeyError:
            raise CatalogError(f"unknown subject {name!r}") from None

    def latest(self, name: str) -> AvroSchema:
        """The newest schema of subject ``name``."""
        return self.subject(name).latest.schema

    def versions(self, name: str) -> tuple[SchemaVersion, ...]:
        """Every version of subject ``name``, oldest first."""
        return self.subject(name).versions

    def compatibility(self, name: str) -> CompatibilityMode:
        """The compatibility mode of subject ``name``."""
        return self.subject(name).compatibility

    def check(self) -> tuple[HistoryCheck, ...]:
        """Checks every subject's history under its mode (what ``iotctl schemas check`` runs)."""
        return tuple(check for name in self.subject_names for check in self.subject(name).check())


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CatalogError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping at the top level")
    return data


def _mode(value: object, where: str) -> CompatibilityMode:
    try:
        return CompatibilityMode(str(value).upper())
    except ValueError:
        choices = ", ".join(CompatibilityMode)
        raise CatalogError(f"{where}: unknown compatibility {value!r} (one of {choices})") from None


def _version_files(family_dir: Path) -> list[tuple[int, Path]]:
    if not family_dir.is_dir():
        raise CatalogError(f"{family_dir}: family directory does not exist")
    found: dict[int, Path] = {}
    for path in family_dir.glob("*.avsc"):
        match = _VERSION_FILE.match(path.name)
        if match is None:
            raise CatalogError(f"{path}: schema files must be named v<N>.avsc")
        found[int(match.group(1))] = path
    numbers = sorted(found)
    if not numbers:
        raise CatalogError(f"{family_dir}: no v<N>.avsc schema files")
    if numbers != list(range(1, len(numbers) + 1)):
        raise CatalogError(f"{family_dir}: versions must be v1..vN without gaps, found {numbers}")
    return [(number, found[number]) for number in numbers]


def _read_schema(path: Path) -> AvroSchema:
    try:
        return parse_schema(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc}") from exc
    except SchemaParseError as exc:
        raise CatalogError(f"{path}: {exc}") from exc
