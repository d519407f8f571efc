"""A stand-in Qdrant server for tests on a machine without one: qdrant-client's in-memory
local mode behind the REST routes clipdex's qdrant-client backend calls. It lets several
processes (workers, the reindex command) share one store, as a real Qdrant server does.

Run: ``python -m tests.qdrant_shim PORT``. Test-only; never a production store."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from pydantic import BaseModel, TypeAdapter
from qdrant_client import QdrantClient, models

local = QdrantClient(location=":memory:")
app = FastAPI()


def _json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_json(item) for item in value]
    return value


def _ok(result: Any) -> dict[str, Any]:
    return {"result": _json(result), "status": "ok", "time": 0.0}


async def _body(request: Request, kind: Any) -> Any:
    return TypeAdapter(kind).validate_python(await request.json())


def _route(method: str, path: str) -> Callable[[Callable[..., Any]], Any]:
    return app.api_route(path, methods=[method])


@_route("GET", "/")
async def root() -> dict[str, Any]:
    return {"title": "qdrant - vector search engine (test shim)", "version": "1.20.0"}


@_route("GET", "/collections/{name}/exists")
async def exists(name: str) -> dict[str, Any]:
    return _ok({"exists": local.collection_exists(name)})


@_route("PUT", "/collections/{name}")
async def create(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.CreateCollection)
    local.create_collection(
        name, vectors_config=body.vectors, sparse_vectors_config=body.sparse_vectors
    )
    return _ok(True)


@_route("GET", "/collections/{name}")
async def info(name: str) -> dict[str, Any]:
    return _ok(local.get_collection(name))


@_route("DELETE", "/collections/{name}")
async def drop(name: str) -> dict[str, Any]:
    return _ok(local.delete_collection(name))


@_route("PUT", "/collections/{name}/index")
async def field_index(name: str) -> dict[str, Any]:
    return _ok({"operation_id": 0, "status": "completed"})  # local mode scans; nothing to build


@_route("GET", "/aliases")
async def aliases() -> dict[str, Any]:
    return _ok(local.get_aliases())


@_route("POST", "/collections/aliases")
async def change_aliases(request: Request) -> dict[str, Any]:
    body = await _body(request, models.ChangeAliasesOperation)
    return _ok(local.update_collection_aliases(change_aliases_operations=body.actions))


@_route("PUT", "/collections/{name}/points")
async def upsert(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.PointInsertOperations)
    points = body.points if isinstance(body, models.PointsList) else body.batch
    return _ok(local.upsert(name, points=points))


@_route("PUT", "/collections/{name}/points/payload")
async def overwrite_payload(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.SetPayload)
    return _ok(local.overwrite_payload(name, payload=body.payload, points=body.points or []))


@_route("POST", "/collections/{name}/points/payload")
async def set_payload(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.SetPayload)
    return _ok(local.set_payload(name, payload=body.payload, points=body.points or []))


@_route("PUT", "/collections/{name}/points/vectors")
async def update_vectors(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.UpdateVectors)
    return _ok(local.update_vectors(name, points=body.points))


@_route("POST", "/collections/{name}/points/delete")
async def delete(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.PointsSelector)
    return _ok(local.delete(name, points_selector=body))


@_route("POST", "/collections/{name}/points/query")
async def query(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.QueryRequest)
    return _ok(
        local.query_points(
            name, query=body.query, using=body.using, prefetch=body.prefetch,
            query_filter=body.filter, limit=body.limit or 10, offset=body.offset,
            with_payload=body.with_payload if body.with_payload is not None else True,
            with_vectors=body.with_vector or False, score_threshold=body.score_threshold,
            search_params=body.params,
        )
    )  # fmt: skip


@_route("POST", "/collections/{name}/points")
async def retrieve(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.PointRequest)
    return _ok(
        local.retrieve(
            name, ids=body.ids,
            with_payload=body.with_payload if body.with_payload is not None else True,
            with_vectors=body.with_vector or False,
        )
    )  # fmt: skip


@_route("POST", "/collections/{name}/points/count")
async def count(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.CountRequest)
    return _ok(local.count(name, count_filter=body.filter, exact=bool(body.exact)))


@_route("POST", "/collections/{name}/points/scroll")
async def scroll(name: str, request: Request) -> dict[str, Any]:
    body = await _body(request, models.ScrollRequest)
    points, following = local.scroll(
        name, scroll_filter=body.filter, limit=body.limit or 10, offset=body.offset,
        with_payload=body.with_payload if body.with_payload is not None else True,
        with_vectors=body.with_vector or False,
    )  # fmt: skip
    return _ok({"points": _json(points), "next_page_offset": following})


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
