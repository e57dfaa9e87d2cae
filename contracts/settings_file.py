"""Component settings from one YAML file, overridden by environment variables.

The gateway and the stream workers read their settings this way: the file gives the
deployment's values, ``<PREFIX>_<SECTION>__<KEY>`` variables win over it, and every problem is
reported with the key it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

__all__ = ["FileSettings", "load_settings"]


class FileSettings(BaseSettings):
    """Settings whose environment variables take precedence over the file's values."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return env_settings, init_settings


S = TypeVar("S", bound=FileSettings)


def load_settings(cls: type[S], path: Path | None, error: type[Exception]) -> S:
    """``cls`` from ``path`` (or from the environment alone when None).

    Raises ``error`` naming the file and, for invalid values, each offending key.
    """
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise error(f"cannot read {path}: {exc.strerror}") from exc
        except yaml.YAMLError as exc:
            raise error(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise error(f"{path} must hold a mapping of settings")
    try:
        return cls(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in exc.errors()
        )
        raise error(f"{path or 'environment'}: {problems}") from exc
