"""Manifests: CSV and JSONL rows naming local files or URLs, with metadata; bad rows reported
by line, the rest ingested; a second run is a no-op."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from core.catalog.models import Asset, AssetIndexState, Failure, Location
from core.runtime import Runtime
from core.store.base import SearchFilter
from ingest.failures import failure_rows
from ingest.fetch import FetchPolicy
from ingest.manifest import BadManifest, is_manifest, read_manifest
from ingest.manifest_ingest import ingest_manifest
from ingest.run import ingest
from ingest.verify import Checks, verify
from search.engine import SearchService
from search.query import SearchOptions
from tests.conftest import cli_env
from tests.fakes import FakeEncoder

pytestmark = pytest.mark.unit

LOOPBACK = FetchPolicy.of(5_000_000, 10.0, False, ["127.0.0.1/32"])
DEFAULT = FetchPolicy.of(5_000_000, 10.0, False, [])
WORKER_REDIS = "redis://127.0.0.1:6379/9"  # a database of its own, emptied by the test


class _Files(SimpleHTTPRequestHandler):
    served: list[str] = []  # noqa: RUF012 -- the paths requested, in order

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.served.append(self.path)
        super().do_GET()


@pytest.fixture
def web(tmp_path: Path, photos: Path) -> Iterator[str]:
    """A web server on 127.0.0.1 serving three photos and a text file."""
    site = tmp_path / "site"
    site.mkdir()
    for source in sorted(photos.glob("*.jpg"))[10:13]:
        shutil.copy2(source, site / source.name)
    (site / "notes.txt").write_text("not an image")
    handler = functools.partial(_Files, directory=str(site))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Files.served = []
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _web_photos(photos: Path) -> list[str]:
    return [p.name for p in sorted(photos.glob("*.jpg"))[10:13]]


def _meta_of(runtime: Runtime) -> dict[str, dict[str, Any] | None]:
    """Asset metadata by one of the asset's paths' file names."""
    with runtime.sessions() as session:
        rows = session.execute(
            select(Location.path, Asset.meta).join(Asset, Asset.id == Location.asset_id)
        ).all()
    return {Path(path).name: meta for path, meta in rows}


def _search(runtime: Runtime, **metadata: str) -> set[str]:
    found = SearchService(runtime).text(
        "a photo",
        SearchOptions(limit=100, filters=SearchFilter(metadata=tuple(metadata.items()))),
    )
    return {hit.id for hit in found}


def _indexed(runtime: Runtime) -> int:
    with runtime.sessions() as session:
        return len(
            session.scalars(select(AssetIndexState).where(AssetIndexState.state == "indexed")).all()
        )


def test_csv_with_paths_urls_metadata_and_bad_rows(
    runtime: Runtime, library: Path, web: str, photos: Path, tmp_path: Path
) -> None:
    names = sorted(p.name for p in library.rglob("*.jpg"))
    remote = _web_photos(photos)
    first = next(library.rglob(names[0]))
    manifest = tmp_path / "photos.csv"
    manifest.write_text(
        "path,url,album,people\n"
        f"{first.relative_to(tmp_path)},,summer,ann\n"  # 2: relative to the manifest's folder
        f"{next(library.rglob(names[1]))},,summer,\n"  # 3: absolute
        f",{web}/{remote[0]}?X-Amz-Signature=secret,web,bob\n"  # 4: a (signed) URL
        ",,orphan,\n"  # 5: neither
        f"{tmp_path / 'gone.jpg'},,x,\n"  # 6: no such file
        f",{web}/notes.txt,x,\n"  # 7: not an image
        f",http://10.1.2.3/{remote[1]},x,\n"  # 8: a private address
        f",{web}/missing.jpg,x,\n"  # 9: HTTP 404
        '"a.jpg","","x","y","extra"\n'  # 10: more fields than the header
        f"{library},,x,\n"  # 11: a folder
        f"{manifest},,x,\n"  # 12: not an image
    )
    report = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (report.rows, report.files, report.urls) == (11, 5, 4)
    assert (report.new, report.encoded, report.tagged) == (3, 3, 3)
    reasons = {row["line"]: str(row["reason"]) for row in report.bad_rows}
    assert sorted(reasons) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert "no 'path' or 'url'" in reasons[5] and "no such file" in reasons[6]
    assert "not a usable image" in reasons[7] and "private or reserved" in reasons[8]
    assert "HTTP 404" in reasons[9] and "the header has 4" in reasons[10]
    assert "not a file" in reasons[11] and "not an image file name" in reasons[12]
    meta = _meta_of(runtime)
    assert meta[names[0]] == {"album": "summer", "people": "ann"}
    assert meta[names[1]] == {"album": "summer"}  # an empty cell sets nothing
    remote_meta = [m for m in meta.values() if m and m.get("album") == "web"]
    assert remote_meta == [{"album": "web", "people": "bob"}]
    assert _indexed(runtime) == 3
    with runtime.sessions() as session:  # the bad rows are in the failures table, by line
        failures = session.scalars(select(Failure.path).where(Failure.stage == "manifest")).all()
    assert sorted(failures) == sorted(f"{manifest.resolve()}:{line}" for line in reasons)
    # Filters on the user's metadata find exactly the tagged images.
    assert len(_search(runtime, album="summer")) == 2
    assert len(_search(runtime, album="web", people="bob")) == 1
    web_hits = SearchService(runtime).text(
        "a photo", SearchOptions(filters=SearchFilter(metadata=(("album", "web"),)))
    )
    # named by the URL's last segment (not the blob hash, never the signature in its query)
    assert [hit.name for hit in web_hits] == [remote[0]]


def test_jsonl_nested_metadata_bad_json_and_a_second_run_is_a_no_op(
    runtime: Runtime, library: Path, web: str, photos: Path, tmp_path: Path
) -> None:
    local = sorted(library.rglob("*.jpg"))[:2]
    remote = _web_photos(photos)
    manifest = tmp_path / "photos.jsonl"
    lines = [
        {"path": str(local[0]), "metadata": {"year": 2020, "tags": ["sea", "sun"]}},
        {"url": f"{web}/{remote[0]}", "source": "web", "metadata": {"ok": True}},
        "{this is not json",
        {"path": str(local[1]), "metadata": {"bad key": "x"}},
        [1, 2],
        {"path": "nul\u0000inside.jpg"},
        {"path": "lone\ud800surrogate.jpg"},
    ]
    manifest.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    encoder = runtime.encoder
    assert isinstance(encoder, FakeEncoder)
    report = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (report.new, report.encoded, report.tagged) == (2, 2, 2)
    assert [row["line"] for row in report.bad_rows] == [3, 4, 5, 6, 7]
    assert [row["reason"] for row in report.bad_rows[3:]] == ["not a usable path"] * 2
    assert "not valid JSON" in str(report.bad_rows[0]["reason"])
    assert "bad key" in str(report.bad_rows[1]["reason"])
    meta = _meta_of(runtime)
    assert meta[local[0].name] == {"year": "2020", "tags": ["sea", "sun"]}
    assert [m for m in meta.values() if m and "source" in m] == [{"source": "web", "ok": "true"}]
    assert len(_search(runtime, tags="sun")) == 1 and len(_search(runtime, year="2020")) == 1

    served, encoded = len(_Files.served), encoder.images_encoded
    again = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (again.new, again.encoded, again.tagged, again.unchanged) == (0, 0, 0, 2)
    assert len(_Files.served) == served  # the URL is not downloaded again
    assert encoder.images_encoded == encoded
    with runtime.sessions() as session:
        failures = session.scalars(select(Failure.path).where(Failure.stage == "manifest")).all()
    assert len(failures) == 5  # replaced, not piled up


def test_a_row_whose_file_was_deleted_leaves_the_index(
    runtime: Runtime, library: Path, tmp_path: Path
) -> None:
    """A manifest is the list of a library kept elsewhere: a file deleted since the last run
    is a bad row and, like a file a folder scan no longer finds, no longer a hit."""
    kept, deleted, copied = sorted(library.rglob("*.jpg"))[:3]
    twin = tmp_path / "twin.jpg"  # the same bytes at a path the manifest does not list
    shutil.copy2(copied, twin)
    manifest = tmp_path / "photos.csv"
    manifest.write_text(f"path,album\n{kept},x\n{deleted},x\n{copied},x\n")
    first = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (first.new, first.encoded, first.removed) == (3, 3, 0)
    ingest(runtime, [twin])
    ids = _search(runtime, album="x")
    assert len(ids) == 3

    deleted.unlink()
    copied.unlink()
    again = ingest_manifest(runtime, manifest, LOOPBACK)
    assert again.removed == 2 and [row["line"] for row in again.bad_rows] == [3, 4]
    left = _search(runtime, album="x")
    assert len(left) == 2  # the deleted one is gone; the copy lives on at the twin's path
    hits = SearchService(runtime).text("a photo", SearchOptions(limit=100))
    assert {hit.path for hit in hits if hit.id in left} == {str(kept), str(twin)}
    version, index = runtime.live_index()
    checks = Checks(timedelta(seconds=60), runtime.settings.blobs)
    assert verify(runtime.sessions, index, version, checks).clean


def test_a_url_to_a_private_address_is_refused_by_default(
    runtime: Runtime, web: str, photos: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"url,album\n{web}/{_web_photos(photos)[0]},x\n")
    report = ingest_manifest(runtime, manifest, DEFAULT)
    assert report.new == 0 and _Files.served == []  # refused before any connection
    assert "127.0.0.1" in str(report.bad_rows[0]["reason"])
    assert "CLIPDEX_URL_ALLOW" in str(report.bad_rows[0]["reason"])


def test_a_url_with_a_password_is_refused_and_the_password_is_shown_nowhere(
    runtime: Runtime, web: str, photos: Path, tmp_path: Path
) -> None:
    """The URL becomes the image's path, shown with every hit to every reader of the index:
    a password in it is refused, before any connection, and not quoted in the reason."""
    manifest = tmp_path / "m.csv"
    first, second = _web_photos(photos)[:2]
    host = web.removeprefix("http://")
    rows = f"http://ann:hunter2@{host}/{first}\n{web}/{second}\nftp://ann:hunter2@{host}/x\n"
    manifest.write_text(f"url\n{rows}")
    report = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (report.new, _Files.served) == (1, [f"/{second}"])
    assert [bad["line"] for bad in report.bad_rows] == [2, 4]
    assert all("user name or password" in str(bad["reason"]) for bad in report.bad_rows)
    with runtime.sessions() as session:
        assert "hunter2" not in json.dumps(failure_rows(session))


def test_workers_get_the_work_only_once_it_has_its_metadata(
    runtime: Runtime, library: Path, tmp_path: Path
) -> None:
    files = sorted(library.rglob("*.jpg"))[:3]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,album\n" + "".join(f"{p},trip\n" for p in files))
    sent: list[str] = []

    def send(version_id: int, ids: list[str]) -> None:
        with runtime.sessions() as session:  # what a worker would read now
            for asset_id in ids:
                assert session.get(Asset, asset_id).meta == {"album": "trip"}  # type: ignore[union-attr]
                state = session.get(AssetIndexState, (asset_id, version_id))
                assert state is not None and state.state == "queued"
        sent.extend(ids)

    report = ingest_manifest(runtime, manifest, DEFAULT, dispatch=send)
    assert report.queued == 3 and len(sent) == 3 and report.encoded == 0


def test_manifests_are_known_by_content(tmp_path: Path, photos: Path) -> None:
    csv_file, jsonl, notes, image = (tmp_path / n for n in ("a.txt", "b", "c.csv", "d.jpg"))
    csv_file.write_text("URL,caption\nhttp://x/y.jpg,hi\n")
    jsonl.write_text('\n{"path": "x.jpg"}\n')
    notes.write_text("name,size\nx,1\n")
    shutil.copy2(sorted(photos.glob("*.jpg"))[0], image)
    assert [is_manifest(p) for p in (csv_file, jsonl, notes, image)] == [True, True, False, False]
    with pytest.raises(BadManifest, match="not a manifest"):
        read_manifest(notes)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("path,caption\nx.jpg,caf\xe9\n".encode("latin-1") * 1)
    with pytest.raises(BadManifest, match="not UTF-8"):
        read_manifest(latin)


def test_the_ingest_command_takes_a_manifest(
    runtime: Runtime, library: Path, web: str, photos: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "list.txt"  # recognized by its content, whatever its name
    local = sorted(library.rglob("*.jpg"))[0]
    manifest.write_text(
        f"path,url,album\n{local},,cli\n,{web}/{_web_photos(photos)[1]},cli\n,,lost\n"
    )
    runtime.close()  # the CLI is another process: let it have the embedded store
    env = cli_env(runtime.settings.home, CLIPDEX_URL_ALLOW_NETWORKS="127.0.0.1/32")
    result = subprocess.run(
        [sys.executable, "-m", "clipdex", "ingest", str(manifest), "--json"],
        env=env, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["manifests"][0]
    assert (shown["new"], shown["encoded"], shown["tagged"]) == (2, 2, 2)
    assert shown["bad_rows"] == [{"line": 4, "reason": "the row has no 'path' or 'url'"}]
    failures = subprocess.run(
        [sys.executable, "-m", "clipdex", "failures", "--json"],
        env=env, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    assert [f["path"] for f in json.loads(failures.stdout)] == [f"{manifest.resolve()}:4"]


@pytest.fixture
def broker() -> Iterator[object]:
    from tests.workerkit import open_broker

    yield from open_broker(WORKER_REDIS)


@pytest.mark.services
@pytest.mark.tiny_real
def test_a_manifest_through_real_workers(
    tmp_path: Path, fresh_postgres: str, broker: object, library: Path, web: str, photos: Path
) -> None:
    """With a broker the command only registers and queues; a real worker encodes, and the
    points it writes carry the rows' metadata (filterable once the worker is done)."""
    from tests.workerkit import Workers, clipdex, indexed, worker_env

    env = worker_env(
        tmp_path / "home", fresh_postgres, WORKER_REDIS, CLIPDEX_URL_ALLOW_NETWORKS="127.0.0.1/32"
    )
    migrated = clipdex(env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    manifest = tmp_path / "m.jsonl"
    files = sorted(library.rglob("*.jpg"))[:2]
    rows = [{"path": str(p), "metadata": {"album": "w"}} for p in files]
    rows.append({"url": f"{web}/{_web_photos(photos)[2]}", "album": "w"})
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    workers = Workers(tmp_path, own_group=False)
    try:
        workers.start(env)
        done = clipdex(env, "ingest", str(manifest), "--json")
        assert done.returncode == 0, done.stderr
        shown = json.loads(done.stdout)
        assert shown["manifests"][0]["queued"] == 3 and shown["states"]["indexed"] == 3
        assert len(indexed(fresh_postgres)) == 3
    finally:
        workers.stop_all()
    found = clipdex(env, "search", "a photo", "--where", "album=w", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    hits = hits["hits"] if isinstance(hits, dict) else hits
    assert len(hits) == 3 and all(hit["meta"] == {"album": "w"} for hit in hits)


def test_rows_on_an_unmounted_share_keep_their_paths(
    runtime: Runtime, tmp_path: Path, photos: Path
) -> None:
    """The manifest's files live on a NAS that is down tonight: its rows are bad rows, but
    nothing leaves the index (and nothing is encoded again when the share is back)."""
    share = tmp_path / "share"
    share.mkdir()
    files = [Path(shutil.copy2(p, share / p.name)) for p in sorted(photos.glob("*.jpg"))[:3]]
    manifest = tmp_path / "photos.csv"
    manifest.write_text("path\n" + "".join(f"{path}\n" for path in files))
    assert ingest_manifest(runtime, manifest, LOOPBACK).encoded == 3
    mounted = tmp_path / "mounted"
    share.rename(mounted)
    share.mkdir()  # the empty mount point
    down = ingest_manifest(runtime, manifest, LOOPBACK)
    assert down.removed == 0 and len(down.bad_rows) == 3
    assert runtime.live_index()[1].count() == 3
    share.rmdir()
    mounted.rename(share)
    back = ingest_manifest(runtime, manifest, LOOPBACK)
    assert (back.encoded, back.unchanged, back.removed) == (0, 3, 0)


def test_a_folder_scan_keeps_the_bad_rows_of_a_manifest_inside_it(
    runtime: Runtime, library: Path
) -> None:
    """A scan forgets the failures it no longer meets, but a manifest's bad rows are named
    after the manifest's path inside the folder and are not the scan's to forget."""
    manifest = library / "photos.csv"
    manifest.write_text(f"path\n{sorted(library.rglob('*.jpg'))[0]}\nmissing.jpg\n")
    ingest_manifest(runtime, manifest, LOOPBACK)
    ingest(runtime, [library])
    with runtime.sessions() as session:
        rows = failure_rows(session)
    assert [(row["path"], row["stage"]) for row in rows] == [(f"{manifest}:3", "manifest")]
