"""The ``clipdex`` command. An entry point: the one place (with the HTTP and Celery apps) that
wires kernel, ingest and search together. Heavy imports happen inside commands so that
``clipdex --help`` stays instant."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from clipdex.runtime import Runtime

app = typer.Typer(
    help="CLIP retrieval: ingest image libraries, search them with words or images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def main() -> None:
    app()


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"clipdex: error: {message}", err=True)
    raise typer.Exit(code)


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


@contextmanager
def _runtime() -> Iterator[Runtime]:
    """Open the kernel, turning every expected failure into one clear line and exit code 2."""
    from clipdex.catalog.index_versions import ModelMismatch
    from clipdex.encoder import ModelUnavailable
    from clipdex.images import ImageRejected
    from clipdex.runtime import NoIndexYet, open_runtime
    from clipdex.settings import load_settings
    from clipdex.store.base import StoreError
    from search.engine import UnknownAsset
    from search.query import BadQuery
    from search.texts import UnknownTextSet

    try:
        runtime = open_runtime(load_settings())
    except (StoreError, OSError) as error:
        _fail(str(error))
    try:
        yield runtime
    except (
        ModelUnavailable, ModelMismatch, StoreError, NoIndexYet, BadQuery, UnknownAsset,
        UnknownTextSet,
    ) as error:  # fmt: skip
        _fail(str(error))
    except ImageRejected as error:
        _fail(f"cannot use that image: {error.reason}")
    except FileNotFoundError as error:
        _fail(str(error))
    finally:
        runtime.close()


def _note_random_weights(runtime: Runtime) -> None:
    identity = runtime.encoder.identity
    if identity.random_weights:
        typer.echo(f"clipdex: note: model is {identity.label}", err=True)


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Folders or files to ingest.")],
    wait: Annotated[
        bool, typer.Option(help="With CLIPDEX_BROKER_URL: wait until workers are done.")
    ] = True,
    json_output: JsonOption = False,
) -> None:
    """Scan folders, encode new images, and bring the index in line with what is on disk.

    With CLIPDEX_BROKER_URL set, the work is registered in the catalog and sent to workers
    (`clipdex worker`) in batches; the command shows progress until they are done."""
    from clipdex.cli_progress import TerminalProgress, wants_bar
    from ingest.run import ingest as run_ingest

    with _runtime() as runtime:
        dispatch = None
        if runtime.settings.broker_url:
            from workers.app import make_celery, sender

            dispatch = sender(make_celery(runtime.settings))
        if wants_bar(json_output):
            with TerminalProgress() as bar:
                report = run_ingest(runtime, paths, bar, dispatch)
                if dispatch is not None and wait:
                    _wait_for_workers(runtime, bar)
        else:
            report = run_ingest(runtime, paths, dispatch=dispatch)
            if dispatch is not None and wait:
                _wait_for_workers(runtime, None)
        settled = _open_counts(runtime) if dispatch is not None and wait else None
    if json_output:
        # With workers, the catalog's counts once they are done (`encoded` counts inline work).
        _print_json({**report.as_dict(), **({"states": settled} if settled else {})})
        return
    typer.echo(
        f"{report.scanned} scanned: {report.new} new, {report.modified} modified, "
        f"{report.unchanged} unchanged, {report.moved} moved, {report.duplicates} duplicates; "
        f"{report.encoded} encoded, {report.reused} reused, {report.failed} failed, "
        f"{report.removed} removed in {report.seconds:.1f}s  [{report.model}]"
    )
    if report.failed:
        typer.echo("see `clipdex failures` for the reasons", err=True)


def _open_counts(runtime: Runtime) -> dict[str, int]:
    from clipdex.status import state_counts

    with runtime.sessions() as session:
        return state_counts(session)


def _wait_for_workers(runtime: Runtime, bar: Any) -> None:
    """Poll the catalog until nothing is pending, queued or processing."""
    import time

    from ingest.queueing import reconcile
    from workers.app import make_celery, sender

    first = _open_counts(runtime)
    total = first["pending"] + first["queued"] + first["processing"]
    if bar is not None:
        bar.phase("workers", total)
    left = total
    last_progress = time.monotonic()
    while left:
        time.sleep(1.0)
        counts = _open_counts(runtime)
        now_left = counts["pending"] + counts["queued"] + counts["processing"]
        if bar is not None and now_left < left:
            bar.advance(left - now_left)
        if now_left < left:
            last_progress = time.monotonic()
        elif time.monotonic() - last_progress > runtime.settings.reconcile_after_seconds:
            reconcile(runtime, sender(make_celery(runtime.settings)))
            last_progress = time.monotonic()
        left = now_left


def _parse_date(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        _fail(f"{name} must be an ISO date such as 2024-06-30 or 2024-06-30T18:00, got {value!r}")


@app.command()
def search(
    text: Annotated[str | None, typer.Argument(help="What to look for, in words.")] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="Find images similar to this one.")
    ] = None,
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many hits (paging).")] = 0,
    folder: Annotated[Path | None, typer.Option(help="Only images under this folder.")] = None,
    formats: Annotated[
        list[str] | None, typer.Option("--format", help="Only these formats (JPEG, PNG...).")
    ] = None,
    min_width: Annotated[int | None, typer.Option(help="Minimum width in pixels.")] = None,
    min_height: Annotated[int | None, typer.Option(help="Minimum height in pixels.")] = None,
    taken_after: Annotated[str | None, typer.Option(help="EXIF date taken, from (ISO).")] = None,
    taken_before: Annotated[str | None, typer.Option(help="EXIF date taken, before (ISO).")] = None,
    min_score: Annotated[float | None, typer.Option(help="Drop hits below this cosine.")] = None,
    cutoff: Annotated[bool, typer.Option(help="Stop where the scores drop off.")] = False,
    collapse: Annotated[
        float | None, typer.Option(help="Collapse hits closer than this cosine (e.g. 0.95).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Search with words (TEXT, e.g. 'beach +sunset -people') or with an image (--image)."""
    from clipdex.store.base import SearchFilter
    from search.engine import SearchService
    from search.query import SearchOptions

    if (text is None) == (image is None):
        _fail("give either TEXT or --image PATH")
    filters = SearchFilter(
        folder=str(folder.expanduser().resolve()) if folder else None,
        formats=tuple(f.upper() for f in formats or ()),
        min_width=min_width,
        min_height=min_height,
        taken_after=_parse_date(taken_after, "--taken-after"),
        taken_before=_parse_date(taken_before, "--taken-before"),
    )
    options = SearchOptions(
        limit=limit, offset=offset, filters=filters, min_score=min_score, adaptive_cutoff=cutoff,
        collapse_duplicates=collapse,
    )  # fmt: skip
    with _runtime() as runtime:
        service = SearchService(runtime)
        if image is not None:
            hits = service.image(image, options)
        else:
            hits = service.text(text or "", options)
        _note_random_weights(runtime)
    _print_hits(hits, offset, json_output)


def _print_hits(hits: list[Any], offset: int, json_output: bool) -> None:
    if json_output:
        _print_json([hit.as_dict() for hit in hits])
        return
    if not hits:
        typer.echo("no matches")
    for rank, hit in enumerate(hits, start=offset + 1):
        typer.echo(f"{rank:4d}  {hit.score:.4f}  {hit.path}")


@app.command()
def similar(
    asset_id: Annotated[str, typer.Argument(help="An asset id from search results.")],
    limit: Annotated[int, typer.Option(help="How many hits.")] = 10,
    offset: Annotated[int, typer.Option(help="Skip this many hits (paging).")] = 0,
    json_output: JsonOption = False,
) -> None:
    """More like this: images similar to an indexed asset."""
    from search.engine import SearchService
    from search.query import SearchOptions

    with _runtime() as runtime:
        hits = SearchService(runtime).similar(asset_id, SearchOptions(limit=limit, offset=offset))
    _print_hits(hits, offset, json_output)


@app.command()
def asset(
    asset_id: Annotated[str, typer.Argument(help="An asset id.")],
    json_output: JsonOption = False,
) -> None:
    """What the catalog knows about one asset: paths, format, size, state."""
    from search.engine import SearchService

    with _runtime() as runtime:
        info = SearchService(runtime).asset(asset_id)
    if json_output:
        _print_json(info.as_dict())
        return
    for key, value in info.as_dict().items():
        typer.echo(f"{key:>9}: {value}")


@app.command()
def classify(
    labels: Annotated[list[str], typer.Argument(help="Candidate labels.")],
    image: Annotated[Path | None, typer.Option("--image", help="Image file.")] = None,
    asset_id: Annotated[str | None, typer.Option("--asset", help="Indexed asset id.")] = None,
    templates: Annotated[
        list[str] | None, typer.Option("--template", help="Prompt with a {} slot (repeatable).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Zero-shot classification of an image against labels."""
    from search.engine import SearchService

    with _runtime() as runtime:
        scores = SearchService(runtime).classify(
            labels, image=image, asset_id=asset_id, templates=templates
        )
        _note_random_weights(runtime)
    if json_output:
        _print_json(
            [{"label": s.label, "probability": s.probability, "score": s.score} for s in scores]
        )
        return
    for score in scores:
        typer.echo(f"{score.probability:7.2%}  {score.score:.4f}  {score.label}")


texts_app = typer.Typer(help="Named text sets (captions, labels) for image -> text search.")
app.add_typer(texts_app, name="texts")


@texts_app.command("add")
def texts_add(
    name: Annotated[str, typer.Argument(help="Set name (letters, digits, - _ .).")],
    file: Annotated[Path, typer.Argument(help="A text file, one text per line.")],
    json_output: JsonOption = False,
) -> None:
    """Encode every line of FILE into the text set NAME."""
    from search.texts import add_texts

    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        _fail(f"cannot read {file}: {error}")
    with _runtime() as runtime:
        info = add_texts(runtime, name, lines)
    if json_output:
        _print_json({"name": info.name, "count": info.count})
    else:
        typer.echo(f"{info.name}: {info.count} texts")


@texts_app.command("list")
def texts_list(json_output: JsonOption = False) -> None:
    """The text sets of the live index."""
    from search.texts import list_text_sets

    with _runtime() as runtime:
        sets = list_text_sets(runtime)
    if json_output:
        _print_json([{"name": s.name, "count": s.count} for s in sets])
        return
    for text_set in sets:
        typer.echo(f"{text_set.name}\t{text_set.count}")


@texts_app.command("search")
def texts_search(
    name: Annotated[str, typer.Argument(help="Text set name.")],
    image: Annotated[Path | None, typer.Option("--image", help="Image file.")] = None,
    asset_id: Annotated[str | None, typer.Option("--asset", help="Indexed asset id.")] = None,
    limit: Annotated[int, typer.Option(help="How many texts.")] = 5,
    json_output: JsonOption = False,
) -> None:
    """Image -> text: the texts of NAME that best describe an image."""
    from search.engine import SearchService

    with _runtime() as runtime:
        hits = SearchService(runtime).texts_for_image(name, image, asset_id, limit)
    if json_output:
        _print_json([{"text": h.text, "score": h.score} for h in hits])
        return
    for hit in hits:
        typer.echo(f"{hit.score:.4f}  {hit.text}")


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Pool processes (one per GPU).")] = 1,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "INFO",
) -> None:
    """Run a Celery worker that encodes batches from CLIPDEX_BROKER_URL (model loaded once per
    pool process, after fork)."""
    from clipdex.settings import load_settings
    from workers.app import QUEUE, make_celery

    settings = load_settings()
    try:
        celery_app = make_celery(settings)
    except ValueError as error:
        _fail(str(error))
    celery_app.worker_main(
        ["worker", f"--concurrency={concurrency}", "--pool=prefork", f"--loglevel={loglevel}",
         "-Q", QUEUE, "--without-gossip", "--without-mingle"]
    )  # fmt: skip


@app.command()
def reconcile(
    older_than: Annotated[
        float | None, typer.Option(help="Seconds; default CLIPDEX_RECONCILE_AFTER_SECONDS.")
    ] = None,
    every: Annotated[
        float | None, typer.Option(help="Run periodically, every this many seconds.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Send again the work stuck in queued/processing (after a broker lost its queue)."""
    import time
    from datetime import timedelta

    from ingest.queueing import reconcile as run_reconcile
    from workers.app import make_celery, sender

    with _runtime() as runtime:
        if not runtime.settings.broker_url:
            _fail("set CLIPDEX_BROKER_URL: reconcile re-enqueues work for workers")
        age = timedelta(seconds=older_than) if older_than is not None else None
        send = sender(make_celery(runtime.settings))
        while True:
            count = run_reconcile(runtime, send, age)
            if json_output:
                _print_json({"requeued": count})
            else:
                typer.echo(f"requeued {count} assets")
            if every is None:
                return
            time.sleep(every)


@app.command()
def jobs(
    job_id: Annotated[str | None, typer.Argument(help="One job; default: the recent ones.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Progress of upload jobs: counts by state and failures with reasons."""
    from ingest.uploads import UnknownJob, job_status, recent_jobs

    with _runtime() as runtime:
        try:
            found = [job_status(runtime, job_id)] if job_id else recent_jobs(runtime)
        except UnknownJob as error:
            _fail(str(error))
    rows: list[dict[str, Any]] = [
        {
            "id": j.id, "kind": j.kind, "created_at": j.created_at.isoformat(), "total": j.total,
            "done": j.done, "states": j.states, "failures": j.failures,
        }
        for j in found
    ]  # fmt: skip
    if json_output:
        _print_json(rows[0] if job_id else rows)
        return
    for row in rows:
        states = ", ".join(f"{k} {v}" for k, v in row["states"].items() if v)
        typer.echo(f"{row['id']}  {row['kind']:<6} {row['total']:>5} files  {states}")
        for failure in row["failures"]:
            typer.echo(f"    {failure['filename']}: {failure['reason']}")


@app.command()
def migrate() -> None:
    """Bring the catalog schema to the newest revision (the compose one-shot service)."""
    from clipdex.catalog.db import make_engine
    from clipdex.catalog.migrate import upgrade_to_head
    from clipdex.settings import load_settings

    engine = make_engine(load_settings().catalog_url)
    try:
        upgrade_to_head(engine)
    finally:
        engine.dispose()
    typer.echo("catalog is at the newest revision")


@app.command()
def optimize() -> None:
    """Build the embedded store's HNSW index: searches drop from a full scan (~16 ms at 100k
    points) to ~1 ms. It takes minutes at 100k points on a small CPU; a server builds its own."""
    import time

    with _runtime() as runtime:
        _, index = runtime.existing_index()
        started = time.perf_counter()
        index.optimize()
        typer.echo(f"optimized {index.count()} points in {time.perf_counter() - started:.1f}s")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8700).")] = None,
) -> None:
    """Run the HTTP API and the results page (OpenAPI at /docs)."""
    import uvicorn

    from clipdex.settings import load_settings
    from search.api.app import create_app

    settings = load_settings()
    app_ = create_app(settings, preload=True)
    uvicorn.run(app_, host=host or settings.api_host, port=port or settings.api_port)


@app.command()
def embed(
    images: Annotated[
        list[Path] | None, typer.Option("--image", help="Image file(s) to embed.")
    ] = None,
    texts: Annotated[list[str] | None, typer.Option("--text", help="Text(s) to embed.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Print raw, L2-normalized model embeddings (no prompt templates)."""
    import numpy as np

    from clipdex.images import ImageRejected, decode_file
    from clipdex.preprocess import to_model_input

    if not images and not texts:
        _fail("give --image PATH and/or --text TEXT")
    results: list[dict[str, Any]] = []
    with _runtime() as runtime:
        encoder = runtime.encoder
        for path in images or []:
            try:
                decoded = decode_file(path, runtime.decode_limits())
            except ImageRejected as rejected:
                results.append({"input": str(path), "error": rejected.reason})
                continue
            pixels = to_model_input(decoded.image, encoder.preprocess)
            vector = encoder.encode_images(pixels[np.newaxis])[0]
            results.append({"input": str(path), "vector": vector.tolist()})
        if texts:
            for text, vector in zip(texts, encoder.encode_texts(texts), strict=True):
                results.append({"input": text, "vector": vector.tolist()})
        _note_random_weights(runtime)
    if json_output:
        _print_json(results)
    else:
        for row in results:
            shown = row.get("error") or f"[{len(row['vector'])}-d] " + " ".join(
                f"{x:+.4f}" for x in row["vector"][:6]
            )
            typer.echo(f"{row['input']}: {shown}")
    if any("error" in row for row in results):
        raise typer.Exit(1)


@app.command()
def failures(json_output: JsonOption = False) -> None:
    """List every file that could not be indexed, with the stage and the reason."""
    from sqlalchemy import select

    from clipdex.catalog.models import Failure

    with _runtime() as runtime, runtime.sessions() as session:
        rows = session.scalars(select(Failure).order_by(Failure.path)).all()
    listed = [
        {"path": r.path, "stage": r.stage, "reason": r.reason, "attempts": r.attempts} for r in rows
    ]
    if json_output:
        _print_json(listed)
        return
    for row in listed:
        typer.echo(f"{row['path']}\t{row['stage']}\t{row['reason']}")
    typer.echo(f"{len(listed)} failed", err=True)


@app.command()
def status(json_output: JsonOption = False) -> None:
    """Catalog counts by state, points in the live index, and the index's model identity."""
    from clipdex.status import collect_status

    with _runtime() as runtime:
        report = collect_status(runtime)
    if json_output:
        _print_json(report)
        return
    model = report["model"]
    typer.echo(f"home:      {report['home']}")
    typer.echo(f"store:     {report['store']}")
    typer.echo(f"model:     {model['label'] if model else '(nothing ingested yet)'}")
    typer.echo(f"assets:    {report['assets']}  paths: {report['paths']}")
    typer.echo("states:    " + ", ".join(f"{k} {v}" for k, v in report["states"].items()))
    typer.echo(f"points:    {report['points']}")
    typer.echo(f"failures:  {report['failures']}")
