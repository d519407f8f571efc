"""One settings object, read from ``CLIPDEX_*`` environment variables and passed explicitly."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import platformdirs
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.paths import resolved
from core.settings_checks import (
    GIB,
    MAX_IN_MEMORY_BYTES,
    MAX_SECONDS,
    checked_broker_url,
    checked_device,
    checked_qdrant_url,
)

Precision = Literal["fp32", "fp16", "bf16", "int8"]


def _default_home() -> Path:
    return platformdirs.user_data_path("clipdex", appauthor=False)


class Settings(BaseSettings):
    """Everything configurable. Build it with :func:`load_settings`, never at import time."""

    model_config = SettingsConfigDict(env_prefix="CLIPDEX_", extra="ignore", frozen=True)

    home: Path = Field(
        default_factory=_default_home,
        description="Catalog, embedded store and blobs (default, and when set empty: the "
        "platform's user data dir); a folder, or a path one can be made at.",
    )
    database_url: str | None = Field(
        default=None,
        description="The catalog: `postgresql://...` (psycopg 3); unset: SQLite under home.",
    )
    qdrant_url: str | None = Field(
        default=None,
        description="A Qdrant server, `http(s)://host:port`; unset: the embedded store under home.",
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="The server's API key.")

    model: str = Field(
        default="ViT-B-32",
        description="An `open_clip.list_models()` name, or `clipdex-tiny` (offline smoke runs).",
    )
    pretrained: str = Field(
        default="openai",
        description="A pretrained tag, an `hf-hub:` id, a checkpoint path, or `random`.",
    )
    device: str = Field(
        default="auto", description="`auto` (cuda, mps, cpu), or `cpu`, `cuda`, `cuda:N` or `mps`."
    )
    precision: Precision = Field(
        default="fp32",
        description="`fp16`/`bf16` autocast (CUDA); `int8`: dynamic int8 linear layers, CPU only "
        "(faster there, 1 - cos vs fp32 ~1e-3, see Speed).",
    )
    batch_size: int = Field(default=32, ge=1, le=4096, description="Images per encoder batch.")
    decode_workers: int = Field(default=2, ge=1, le=256, description="Decode threads.")
    decode_pool: Literal["threads", "processes"] = Field(
        default="threads",
        description="Decode in `threads` or `processes` (`decode_workers` of them; processes "
        "pay off on many cores feeding a GPU, see Speed).",
    )

    max_file_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        le=MAX_IN_MEMORY_BYTES,
        description="Files above this are refused unread (at most 16 GiB: a file is read whole).",
    )
    max_image_pixels: int = Field(
        default=89_478_485,
        ge=1,
        le=1_000_000_000,
        description="Images above this many pixels are refused (at most 10^9: 3 GB decoded).",
    )
    draft_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=16.0,
        allow_inf_nan=False,
        description="JPEG DCT scaling keeps the short side at least this many times the model "
        "input, so quality at the model's resolution is unaffected; at most 16 (then only photos "
        "over 7,168 px a side are scaled for a 224 px input; `CLIPDEX_DECODE=exact`: none).",
    )
    decode: Literal["fast", "exact"] = Field(
        default="fast",
        description="`fast`: large JPEGs decode at a reduced DCT scale (1 - cos vs open_clip up "
        "to ~1e-3, see Speed); `exact`: full decode, vectors equal open_clip's preprocessing.",
    )

    broker_url: str | None = Field(
        default=None,
        description="Celery on Redis (`redis://host:port/db`) for workers; unset: ingest encodes "
        "inline.",
    )
    task_batch_size: int = Field(
        default=256, ge=1, le=100_000, description="Asset ids per task message."
    )
    send_window_ms: int = Field(
        default=500,
        ge=0,
        le=60_000,
        description="The API gathers uploads for workers into whole task messages: it sends "
        "after this long without a new upload (at most 10x it after the first), or at once "
        "when a task batch is full; 0: one message per upload request.",
    )
    task_soft_time_limit: int = Field(
        default=600, ge=1, le=MAX_SECONDS, description="Seconds, per task (at most 30 days)."
    )
    task_time_limit: int = Field(
        default=660, ge=1, le=MAX_SECONDS, description="Seconds, per task (hard; at most 30 days)."
    )
    visibility_timeout: int = Field(
        default=3600,
        ge=1,
        le=MAX_SECONDS,
        description="Redis redelivers a task not acked within this; above the hard limit "
        "(at most 30 days).",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        le=100,
        description="Deliveries of an asset before it is dead-lettered (at most 100).",
    )
    reconcile_after_seconds: int = Field(
        default=900,
        ge=1,
        le=MAX_SECONDS,
        description="Work queued or processing longer than this is re-sent (at most 30 days).",
    )

    search_max_limit: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="Largest page of hits (at most 100,000, as deep as an offset goes).",
    )
    text_cache_size: int = Field(
        default=4096,
        ge=0,
        le=1_000_000,
        description="Query texts whose vectors are kept (LRU; at most 1,000,000: 2-4 GB).",
    )
    classify_templates: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["a photo of a {}."],
        description="Zero-shot prompts, `|`-separated, each with a `{}` slot for the label.",
    )

    api_host: str = Field(default="127.0.0.1", description="`clipdex serve` bind address.")
    api_port: int = Field(default=8700, ge=1, le=65535, description="`clipdex serve` port.")
    api_read_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated keys for searching; with no keys at all the API is open "
        "(and served on loopback only).",
    )
    api_write_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys for uploads and text sets."
    )
    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024,
        ge=1,
        le=MAX_IN_MEMORY_BYTES,
        description="Request bodies above this get 413 (at most 16 GiB).",
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins; unset: no CORS."
    )
    blob_root: Path | None = Field(
        default=None,
        description="Uploaded bytes, stored by content (default, and when set empty: "
        "home/blobs); a folder, or a path one can be made at.",
    )
    search_ef: int = Field(
        default=512,
        ge=16,
        le=4096,
        description="Embedded store: how wide a search walks the graph (higher: better recall, "
        "slower); pages past it are exact scans.",
    )
    store_quantization: Literal["int8", "none"] = Field(
        default="int8",
        description="Embedded store, new collections: int8 codes for the graph walk, "
        "results rescored with the float vectors; `none`: floats only.",
    )
    graph_threshold: int = Field(
        default=20_000,
        ge=100,
        le=200_000,
        description="Embedded store, new collections: vectors a segment holds before it gets a "
        "search graph (built at the end of a CLI ingest or reindex, or by `clipdex optimize`).",
    )
    filter_scan_points: int = Field(
        default=100_000,
        ge=100,
        le=10_000_000,
        description="Embedded store, new collections: a filter matching fewer points of a "
        "segment scans them (near-exact, 40-70 ns a point) instead of walking the graph, which "
        "misses hits under selective filters; a built segment scans at least what an eighth of "
        "it matches, up to 125,000 (README: A million images).",
    )
    min_free_bytes: int = Field(
        default=256 * 1024 * 1024,
        ge=0,
        le=1024 * GIB,
        description="Ingest, reindex, repair and uploads stop with one line below this much "
        "free disk; searches and small writes (tags, deletes, a worker's batches) go on down to "
        "64 MiB (0: no check; at most 1 TiB).",
    )
    allowed_image_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Server-side folders a query's path term may name; unset: none.",
    )
    url_max_bytes: int = Field(
        default=50 * 1024 * 1024,
        ge=1,
        le=MAX_IN_MEMORY_BYTES,
        description="A manifest URL's download stops above this (at most 16 GiB).",
    )
    url_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        allow_inf_nan=False,
        description="Deadline of one URL download, redirects included.",
    )
    url_allow_private: bool = Field(
        default=False,
        description="Let manifest URLs reach private, loopback, link-local and reserved addresses "
        "(refused by default: SSRF).",
    )
    url_allow_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated networks (CIDR) manifest URLs may reach even if private.",
    )
    rate_limit_per_minute: int = Field(
        default=0,
        ge=0,
        le=1_000_000,
        description="Requests a minute to /v1 per client address and per key (0: no limit).",
    )
    auth_failures_per_minute: int = Field(
        default=20,
        ge=0,
        le=1_000_000,
        description="Failed key checks a minute per address before 429s (0: off).",
    )
    watch_debounce_ms: int = Field(
        default=1000,
        ge=10,
        le=600_000,
        description="clipdex watch / serve --watch: the longest a batch of changes waits (it "
        "closes sooner, after 50 ms without new changes).",
    )
    watch_rescan_seconds: int = Field(
        default=3600,
        ge=0,
        le=MAX_SECONDS,
        description="clipdex watch / serve --watch: full rescan of every library this often "
        "(the safety net for missed events, network shares); 0: never; at most 30 days.",
    )

    @field_validator(
        "api_read_keys", "api_write_keys", "cors_origins", "allowed_image_roots",
        "classify_templates", "url_allow_networks", mode="before",
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

    @field_validator("url_allow_networks", mode="after")
    @classmethod
    def _networks_parse(cls, value: list[str]) -> list[str]:
        for network in value:
            ipaddress.ip_network(network, strict=False)  # ValueError names the bad one
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

    @field_validator("home", "blob_root", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """``CLIPDEX_HOME=""`` is the default home, not the working folder (``Path("")`` is
        ``.``); the same for the blob root."""
        if isinstance(value, str) and not value.strip():
            return _default_home() if info.field_name == "home" else None
        return value

    @field_validator("database_url", "qdrant_url", "broker_url", mode="before")
    @classmethod
    def _empty_url_is_unset(cls, value: Any) -> Any:
        """``CLIPDEX_QDRANT_URL=`` (as a compose file or a shell leaves it) is unset: the
        embedded default, the same for every command (some tested it as text, some as None)."""
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return _usable_folder(resolved(value))

    @field_validator("blob_root", mode="after")
    @classmethod
    def _blob_root_is_a_folder(cls, value: Path | None) -> Path | None:
        return None if value is None else _usable_folder(resolved(value))

    @field_validator("qdrant_url", mode="after")
    @classmethod
    def _qdrant_url_parses(cls, value: str | None) -> str | None:
        """``host[:port]`` (http) or an http(s) URL, parsed in full here: a bad port or host
        failed in qdrant-client's URL parser with a traceback."""
        return None if value is None else checked_qdrant_url(value)

    @field_validator("device", mode="after")
    @classmethod
    def _device_clipdex_runs_on(cls, value: str) -> str:
        return checked_device(value)

    @field_validator("broker_url", mode="after")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        return checked_broker_url(value) if value else value

    @field_validator("allowed_image_roots", mode="after")
    @classmethod
    def _resolve_roots(cls, value: list[Path]) -> list[Path]:
        """Resolved once here (``~`` expanded, symlinks followed); every check compares a
        resolved path against these as they are."""
        return [resolved(root) for root in value]

    @property
    def catalog_url(self) -> str:
        """The SQLAlchemy URL of the catalog: the configured one, else SQLite under home."""
        return self.database_url or f"sqlite:///{self.catalog_file}"

    @property
    def catalog_file(self) -> Path | None:
        """The SQLite catalog under home; None when ``database_url`` names another one."""
        return None if self.database_url else self.home / "catalog.db"

    @property
    def blobs(self) -> Path:
        return resolved(self.blob_root or self.home / "blobs")

    @property
    def store_path(self) -> Path:
        """Where the embedded vector store keeps its shards."""
        return self.home / "store"


def _usable_folder(path: Path) -> Path:
    """``path`` when it is a folder or could be made one: its nearest existing ancestor must be
    a folder (a regular file there fails every write under it later)."""
    for existing in (path, *path.parents):
        if existing.exists():
            if not existing.is_dir():
                raise ValueError(f"{existing} is not a folder")
            return path
    return path


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, with explicit overrides winning."""
    return Settings(**overrides)
