"""What `clipdex reindex` and the server's reindex job share: the plan (the new model, its
decode limits, the free-space check, the workers if any) and the evaluation gate."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from core.settings import Settings
from ingest.activation import activate_synced
from ingest.reindex import ReindexPlan, Workers

if TYPE_CHECKING:
    from core.runtime import Runtime


def reindex_plan(
    settings: Settings,
    model: str,
    pretrained: str | None,
    swap: bool,
    workers: Workers | None = None,
    build_index: bool = False,
) -> ReindexPlan:
    """The new model (loaded lazily), its decode limits and the free-space check.
    ``build_index``: the CLI, which holds the store alone (never the server: a build pauses
    the process, see ``ingest.graph``)."""
    from core.diskspace import check_free_space, write_paths
    from core.encoder import ModelSpec, OpenClipEncoder
    from core.runtime import decode_limits

    spec = ModelSpec(model, pretrained or "openai", settings.device, settings.precision)
    encoder = OpenClipEncoder(spec)
    space = write_paths(settings.home, settings.blobs, settings.catalog_url)
    return ReindexPlan(
        encoder=encoder, limits=decode_limits(settings, encoder.preprocess),
        batch_size=settings.batch_size, decode_workers=settings.decode_workers, swap=swap,
        before_write=lambda: check_free_space(space, settings.min_free_bytes), workers=workers,
        build_index=build_index,
    )  # fmt: skip


def gate_version(
    runtime: Runtime, version_id: int, queries: list[Any], max_drop: float, swap: bool
) -> dict[str, Any]:
    """Score the new and the live version on the same queries; swap only if not worse."""
    from search.evaluate import evaluate

    live = runtime.live_version()
    new_scores = evaluate(runtime, runtime.version(version_id), queries)
    live_scores = evaluate(runtime, live, queries)
    drops = {
        "ndcg@10": live_scores.ndcg_at_10 - new_scores.ndcg_at_10,
        "recall@10": live_scores.recall_at_10 - new_scores.recall_at_10,
    }
    passed = all(drop <= max_drop + 1e-12 for drop in drops.values())
    swapped = False
    if passed and swap:
        activate_synced(runtime, version_id, caught_up=True)  # just built and caught up
        swapped = True
    return {
        "passed": passed, "max_drop": max_drop, "drops": drops, "swapped": swapped,
        "state": "live" if swapped else "ready",
        "new": new_scores.as_dict(), "live": live_scores.as_dict(),
    }  # fmt: skip
