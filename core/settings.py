"""One settings object, read from ``CLIPDEX_*`` environment variables and passed explicitly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

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

    # Distributed ingest (Celery on Redis). Unset: ingest encodes inline.
    broker_url: str | None = None
    # Asset ids per task message. Several encoder batches per task let decode overlap encoding
    # inside the task, as it does inline.
    task_batch_size: int = Field(default=256, ge=1, le=100_000)
    task_soft_time_limit: int = Field(default=600, ge=1)
    task_time_limit: int = Field(default=660, ge=1)
    # Redis redelivers a task not acked within this; it must exceed the hard time limit.
    visibility_timeout: int = Field(default=3600, ge=1)
    max_attempts: int = Field(default=3, ge=1)
    reconcile_after_seconds: int = Field(default=900, ge=1)

    search_max_limit: int = Field(default=1000, ge=1)
    text_cache_size: int = Field(default=4096, ge=0)
    # Zero-shot classification: label vector = mean of these prompts, renormalized.
    classify_templates: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["a photo of a {}."]
    )

    # HTTP API. Keys are comma-separated; when none are set the API is open (loopback only).
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8700, ge=1, le=65535)
    api_read_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_write_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, ge=1)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # Uploaded bytes, stored by content (default: $CLIPDEX_HOME/blobs).
    blob_root: Path | None = None
    # Writing stops cleanly (one line, exit 2) when the disk holding the home (catalog, store)
    # or the blobs has less than this free; nothing is marked indexed that was not stored.
    min_free_bytes: int = Field(default=256 * 1024 * 1024, ge=0)
    # Server-side paths a query may name; empty means none.
    allowed_image_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Requests a minute to the keyed API (/v1) per client address and, separately, per API key;
    # over it a request gets 429 with Retry-After. 0 = no limit. Counted in memory, per process.
    rate_limit_per_minute: int = Field(default=0, ge=0, le=1_000_000)
    # Failed key checks (401/403) a minute per client address; past it, every keyed request
    # from that address gets 429 before its key is looked at, until the bucket refills. 0 = off.
    auth_failures_per_minute: int = Field(default=20, ge=0, le=1_000_000)

    @field_validator(
        "api_read_keys", "api_write_keys", "cors_origins", "allowed_image_roots",
        "classify_templates", mode="before",
    )  # fmt: skip
    @classmethod
    def _list_from_text(cls, value: Any, info: ValidationInfo) -> Any:
        """From the environment: a JSON list, or comma-separated text (templates: '|')."""
        if not isinstance(value, str):
            return value
        if value.lstrip().startswith("["):
            return json.loads(value)
        separator = "|" if info.field_name == "classify_templates" else ","
        return [item.strip() for item in value.split(separator) if item.strip()]

    @field_validator("classify_templates", mode="after")
    @classmethod
    def _templates_have_a_slot(cls, value: list[str]) -> list[str]:
        if not value or any("{}" not in template for template in value):
            raise ValueError("every classify template needs a {} slot for the label")
        return value

    @model_validator(mode="after")
    def _time_limits_nest(self) -> Settings:
        if not (
            self.task_soft_time_limit < self.task_time_limit < self.visibility_timeout
            and self.task_time_limit < self.reconcile_after_seconds
        ):
            raise ValueError(
                "need task_soft_time_limit < task_time_limit < visibility_timeout and "
                "task_time_limit < reconcile_after_seconds, or running tasks get redelivered"
            )
        return self

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
    def blobs(self) -> Path:
        return (self.blob_root or self.home / "blobs").expanduser().resolve()

    @property
    def store_path(self) -> Path:
        """Where the embedded vector store keeps its shards."""
        return self.home / "store"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
