"""``clipdex export``: every indexed asset of one index version with its vector, as Parquet or
NPZ, in bounded memory.

Rows are read in chunks of :data:`CHUNK` (catalog rows, then the points with their vectors) and
written as they come: Parquet row groups directly; for NPZ each column is spooled to a temporary
file first and then streamed into its ``.npy`` member, since a zip member is written whole. The
file is written next to the target and renamed into place, so a failed export leaves nothing.

Columns: ``id``, ``sha256``, ``paths`` (live paths), ``format`` (Pillow's name, as ``JPEG``),
``width`` and ``height`` (as displayed, EXIF rotation applied), ``bytes`` (the file's size),
``taken_at`` (date taken, UTC; null when unknown), ``metadata`` (format, width, height and
taken_at again, as in the first files) and ``vector`` (float32, L2-normalized). NPZ has no null:
an unknown format is ``""``, an unknown width or height ``-1`` and an unknown date ``NaT``.

The file's metadata (Parquet schema metadata key ``clipdex``, NPZ member ``meta``: a
one-element string array) is a JSON object with the index version, its collection, the model
identity and the row count.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import select

from core.catalog.models import Asset, AssetIndexState, AssetState, IndexVersion, Location
from core.paths import resolved
from core.store.base import rfc3339

if TYPE_CHECKING:
    from core.runtime import Runtime

CHUNK = 1000
FORMATS = (".parquet", ".npz")
META_KEY = "clipdex"
EXPORT_FORMAT = 1


class ExportRefused(ValueError):
    """The output path has an extension clipdex cannot write."""


@dataclass(frozen=True, slots=True)
class ExportRow:
    id: str
    sha256: str
    paths: list[str]
    format: str | None
    width: int | None
    height: int | None
    bytes: int
    taken_at: datetime | None  # naive, UTC
    metadata: dict[str, Any]
    vector: np.ndarray[Any, np.dtype[np.float32]]


@dataclass(frozen=True, slots=True)
class ExportReport:
    path: str
    format: str
    version: int
    rows: int
    missing_points: int  # indexed in the catalog but with no point in the store (left out)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "version": self.version,
            "rows": self.rows,
            "missing_points": self.missing_points,
        }


def file_meta(version: IndexVersion) -> dict[str, Any]:
    return {
        "format": EXPORT_FORMAT,
        "index_version": version.id,
        "collection": version.collection,
        "model": {
            "architecture": version.architecture,
            "pretrained": version.pretrained,
            "open_clip_version": version.open_clip_version,
            "dim": version.dim,
            "preprocess": version.preprocess,
        },
    }


def indexed_ids(runtime: Runtime, version: IndexVersion) -> Iterator[list[str]]:
    """The ids of the assets indexed in ``version``, in chunks, by keyset pagination."""
    after = ""
    while True:
        query = (
            select(AssetIndexState.asset_id)
            .where(
                AssetIndexState.index_version_id == version.id,
                AssetIndexState.state == AssetState.INDEXED,
                AssetIndexState.asset_id > after,
            )
            .order_by(AssetIndexState.asset_id)
            .limit(CHUNK)
        )
        with runtime.sessions() as session:
            chunk = list(session.scalars(query))
        if not chunk:
            return
        yield chunk
        after = chunk[-1]


def iter_rows(runtime: Runtime, version: IndexVersion, missing: list[str]) -> Iterator[ExportRow]:
    """Every exported row; ids with no point are appended to ``missing``."""
    index = runtime.index_of(version)
    for chunk in indexed_ids(runtime, version):
        with runtime.sessions() as session:
            assets = {a.id: a for a in session.scalars(select(Asset).where(Asset.id.in_(chunk)))}
            paths: dict[str, list[str]] = defaultdict(list)
            query = select(Location.asset_id, Location.path).where(
                Location.asset_id.in_(chunk), Location.missing.is_(False)
            )
            for asset_id, path in session.execute(query):
                paths[asset_id].append(path)
        points = {hit.id: hit for hit in index.retrieve(chunk, with_vectors=True)}
        for asset_id in chunk:
            point, asset = points.get(asset_id), assets.get(asset_id)
            if point is None or point.vector is None or asset is None:
                missing.append(asset_id)
                continue
            taken_at = asset.taken_at
            if taken_at is not None and taken_at.tzinfo is not None:
                taken_at = taken_at.astimezone(UTC).replace(tzinfo=None)
            yield ExportRow(
                id=asset_id,
                sha256=asset.sha256,
                paths=sorted(paths.get(asset_id, [])),
                format=asset.format,
                width=asset.width,
                height=asset.height,
                bytes=asset.size_bytes,
                taken_at=taken_at,
                metadata={
                    "format": asset.format,
                    "width": asset.width,
                    "height": asset.height,
                    "taken_at": rfc3339(asset.taken_at) if asset.taken_at else None,
                },
                vector=np.asarray(point.vector, dtype=np.float32),
            )


def export(runtime: Runtime, version: IndexVersion, out: Path) -> ExportReport:
    """Write ``version``'s indexed assets to ``out`` (``.parquet`` or ``.npz``)."""
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise ExportRefused(f"cannot export to {out.name}: give a .parquet or .npz path")
    out = resolved(out)
    if out.is_dir():
        raise ExportRefused(f"cannot export to {out}: it is a folder; name a file in it")
    missing: list[str] = []
    rows = iter_rows(runtime, version, missing)
    meta = file_meta(version)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)  # as `mkdir -p`: a new folder is fine
        handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    except OSError as error:
        raise ExportRefused(
            f"cannot write in {out.parent}: {error.strerror or type(error).__name__}"
        ) from None
    os.close(handle)
    try:
        if suffix == ".parquet":
            count = _write_parquet(Path(temporary), rows, meta, version.dim)
        else:
            count = _write_npz(Path(temporary), rows, meta, version.dim)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return ExportReport(str(out), suffix[1:], version.id, count, len(missing))


def _write_parquet(path: Path, rows: Iterator[ExportRow], meta: dict[str, Any], dim: int) -> int:
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    metadata_type = pa.struct(
        [
            ("format", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("taken_at", pa.string()),
        ]
    )
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("sha256", pa.string()),
            ("paths", pa.list_(pa.string())),
            ("format", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("bytes", pa.int64()),
            ("taken_at", pa.timestamp("us", tz="UTC")),
            ("metadata", metadata_type),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )
    count = 0
    batch: list[ExportRow] = []

    def table_of(chunk: list[ExportRow]) -> Any:
        flat = np.concatenate([row.vector for row in chunk]).astype(np.float32)
        return pa.table(
            [
                pa.array([row.id for row in chunk], pa.string()),
                pa.array([row.sha256 for row in chunk], pa.string()),
                pa.array([row.paths for row in chunk], pa.list_(pa.string())),
                pa.array([row.format for row in chunk], pa.string()),
                pa.array([row.width for row in chunk], pa.int32()),
                pa.array([row.height for row in chunk], pa.int32()),
                pa.array([row.bytes for row in chunk], pa.int64()),
                pa.array([row.taken_at for row in chunk], pa.timestamp("us", tz="UTC")),
                pa.array([row.metadata for row in chunk], metadata_type),
                pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), dim),
            ],
            schema=schema,
        )

    with pq.ParquetWriter(path, schema.with_metadata({META_KEY: json.dumps(meta)})) as writer:
        for row in rows:
            batch.append(row)
            if len(batch) >= CHUNK:
                writer.write_table(table_of(batch))
                count += len(batch)
                batch = []
        if batch or count == 0:
            writer.write_table(table_of(batch) if batch else schema.empty_table())
            count += len(batch)
    return count


_STRING_COLUMNS = ("id", "sha256", "paths", "format", "metadata")
_NUMBER_COLUMNS = {"width": "<i8", "height": "<i8", "bytes": "<i8", "taken_at": "<M8[us]"}
_COLUMNS = ("id", "sha256", "paths", "format", "width", "height", "bytes", "taken_at", "metadata")
_UNKNOWN = -1  # NPZ width/height not recorded


def _npz_numbers(row: ExportRow) -> dict[str, np.ndarray[Any, Any]]:
    """A row's number columns, one element each, in their member dtypes."""
    taken = np.datetime64(row.taken_at, "us") if row.taken_at else np.datetime64("NaT", "us")
    return {
        "width": np.array([_UNKNOWN if row.width is None else row.width], "<i8"),
        "height": np.array([_UNKNOWN if row.height is None else row.height], "<i8"),
        "bytes": np.array([row.bytes], "<i8"),
        "taken_at": np.array([taken], "<M8[us]"),
    }


def _write_npz(path: Path, rows: Iterator[ExportRow], meta: dict[str, Any], dim: int) -> int:
    """Spool every column to a temporary file, then stream each into its ``.npy`` member.
    String columns are fixed-width unicode arrays; ``paths`` and ``metadata`` hold one JSON
    text per row."""
    count = 0
    widths = dict.fromkeys(_STRING_COLUMNS, 1)
    with ExitStack() as stack:
        spool_dir = stack.enter_context(tempfile.TemporaryDirectory(dir=path.parent))
        spools: dict[str, IO[bytes]] = {
            name: stack.enter_context(open(Path(spool_dir) / name, "w+b"))
            for name in (*_COLUMNS, "vector")
        }
        for row in rows:
            values = {
                "id": row.id,
                "sha256": row.sha256,
                "paths": json.dumps(row.paths, ensure_ascii=False),
                "format": row.format or "",
                "metadata": json.dumps(row.metadata, ensure_ascii=False),
            }
            for name, value in values.items():
                widths[name] = max(widths[name], len(value))
                spools[name].write(json.dumps(value).encode() + b"\n")
            for name, number in _npz_numbers(row).items():
                spools[name].write(number.tobytes())
            spools["vector"].write(row.vector.astype("<f4").tobytes())
            count += 1
        meta = {**meta, "rows": count}
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            for name in _COLUMNS:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                    spool = spools[name]
                    spool.seek(0)
                    if name in _NUMBER_COLUMNS:
                        _npy_header(member, np.dtype(_NUMBER_COLUMNS[name]), (count,))
                        while block := spool.read(CHUNK * 8):
                            member.write(block)
                        continue
                    dtype = np.dtype(f"<U{widths[name]}")
                    _npy_header(member, dtype, (count,))
                    for lines in _line_chunks(spool):
                        member.write(np.array([json.loads(x) for x in lines], dtype).tobytes())
            with archive.open("vector.npy", "w", force_zip64=True) as member:
                _npy_header(member, np.dtype("<f4"), (count, dim))
                spool = spools["vector"]
                spool.seek(0)
                while block := spool.read(CHUNK * dim * 4):
                    member.write(block)
            text = json.dumps(meta)
            with archive.open("meta.npy", "w") as member:
                _npy_header(member, np.dtype(f"<U{len(text)}"), (1,))
                member.write(np.array([text], f"<U{len(text)}").tobytes())
    return count


def _line_chunks(spool: IO[bytes]) -> Iterator[list[bytes]]:
    lines: list[bytes] = []
    for line in spool:
        lines.append(line)
        if len(lines) >= CHUNK:
            yield lines
            lines = []
    if lines:
        yield lines


def _npy_header(member: IO[bytes], dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
    header = {
        "descr": np.lib.format.dtype_to_descr(dtype),
        "fortran_order": False,
        "shape": shape,
    }
    np.lib.format.write_array_header_2_0(member, header)
