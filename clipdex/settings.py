"""One settings object, read from ``CLIPDEX_*`` environment variables and passed explicitly."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Precision = Literal["fp32", "fp16", "bf16"]


def _default_home() -> Path:
    return platformdirs.user_data_path("clipdex", appauthor=False)


class Settings(BaseSettings):
    """Everything configurable. Build it with :func:`load_settings`, never at import time."""

    model_config = SettingsConfigDict(env_prefix="CLIPDEX_", extra="ignore", frozen=True)

    home: Path = Field(default_factory=_default_home)
    database_url: str | None = None
    qdrant_url: str | None = None
    qdrant_api_key: SecretStr | None = None

    model: str = "ViT-B-32"
    pretrained: str = "openai"
    device: str = "auto"
    precision: Precision = "fp32"
    batch_size: int = Field(default=32, ge=1, le=4096)
    decode_workers: int = Field(default=2, ge=1, le=256)

    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=89_478_485, ge=1)
    # JPEG DCT scaling (Pillow draft) keeps the shortest side at least this many times the
    # model input, so quality at the model's resolution is unaffected.
    draft_factor: float = Field(default=2.0, ge=1.0)

    search_max_limit: int = Field(default=1000, ge=1)

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @property
    def catalog_url(self) -> str:
        """The SQLAlchemy URL of the catalog: the configured one, else SQLite under home."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.home / 'catalog.db'}"

    @property
    def store_path(self) -> Path:
        """Where the embedded vector store keeps its shards."""
        return self.home / "store"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
