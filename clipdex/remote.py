"""The CLI's side of a home server: the commands' work, asked of the ``clipdex serve`` that owns
this embedded home (``clipdex.homeserver``), answered with the same values the commands print.

Reads map onto the HTTP API; ``ingest`` and ``reindex`` start an admin job in the server and
poll it, drawing the same progress bar from its phases and counts.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from clipdex.homeserver import HomeServer
from core.paths import expand_user
from search.client import ClipdexClient, ClipdexError

if TYPE_CHECKING:
    from search.query import SearchOptions
    from search.results import AssetInfo, Hit

POLL_SECONDS = 0.25
JOB_PATH = "/v1/admin/jobs/"


class Progress(Protocol):
    """What a job's progress is drawn on (``clipdex.progress.TerminalProgress``)."""

    def phase(self, name: str, total: int) -> None: ...

    def advance(self, count: int) -> None: ...


class _Client(ClipdexClient):
    def call(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._call(method, url, **kwargs)


class RemoteHome:
    """One home server, reached with its local admin token (a key with every scope)."""

    def __init__(self, server: HomeServer, timeout: float = 120.0) -> None:
        self.server = server
        self.client = _Client(server.url, api_key=server.token, timeout=timeout)

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = self.client.call("GET", "/v1/status")
        return report

    def failures(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self.client.call("GET", "/v1/failures")
        return rows

    def search(self, text: str | None, image: Path | None, options: SearchOptions) -> list[Hit]:
        if image is not None:
            return self.client.image(image, options)
        return self.client.text(text or "", options)

    def similar(self, asset_id: str, options: SearchOptions) -> list[Hit]:
        return self.client.similar(asset_id, options)

    def asset(self, asset_id: str) -> AssetInfo:
        return self.client.asset(asset_id)

    def note_random_weights(self) -> None:
        """Say on stderr when the live model has random weights, as the local commands do."""
        from clipdex.cli.common import note_model
        from core.encoder import RANDOM_WEIGHTS

        live = self.client.call("GET", "/v1/index")
        if live.get("pretrained") == RANDOM_WEIGHTS:
            note_model(str(live["model"]))

    def activate(self, version_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self.client.call("POST", f"/v1/index/{version_id}/activate")
        return result

    def ingest(self, paths: list[Path], progress: Progress | None) -> dict[str, Any]:
        """``clipdex ingest`` in the server; paths are made absolute here (the server's working
        folder is not this one)."""
        body = {"paths": [str(expand_user(path).absolute()) for path in paths]}
        return self._job("/v1/admin/ingest", body, progress)

    def reindex(self, order: dict[str, Any], json_output: bool) -> tuple[Any, Any]:
        """``clipdex reindex`` in the server, with the CLI's progress bar and error lines: the
        report (an ``ingest.reindex.ReindexReport``) and the gate's verdict, if any."""
        from clipdex.cli.common import expected_errors
        from clipdex.progress import TerminalProgress, wants_bar
        from ingest.reindex import ReindexReport

        with expected_errors():
            if wants_bar(json_output):
                with TerminalProgress() as bar:
                    done = self._job("/v1/admin/reindex", order, bar)
            else:
                done = self._job("/v1/admin/reindex", order, None)
        gated = done.pop("gate", None)
        return ReindexReport(**done), gated

    def _job(self, url: str, body: dict[str, Any], progress: Progress | None) -> dict[str, Any]:
        job = self.client.call("POST", url, json=body)
        seen_phase, seen_done = 0, 0
        while True:
            if progress is not None:
                if job["phase_seq"] != seen_phase:
                    seen_phase, seen_done = job["phase_seq"], 0
                    progress.phase(job["phase"], job["total"])
                if job["done"] > seen_done:
                    progress.advance(job["done"] - seen_done)
                    seen_done = job["done"]
            if job["state"] == "done":
                report: dict[str, Any] = job["report"]
                return report
            if job["state"] == "failed":
                raise ClipdexError(job["status"] or 500, job["error"] or "the job failed")
            time.sleep(POLL_SECONDS)
            job = self._poll(job["id"])

    def _poll(self, job_id: str) -> dict[str, Any]:
        try:
            job: dict[str, Any] = self.client.call("GET", JOB_PATH + job_id)
        except ClipdexError as error:
            if error.status not in (408, 503):
                raise
            raise ClipdexError(
                error.status,
                f"the server at {self.server.url} (pid {self.server.pid}) stopped answering "
                f"during the job; what it finished is kept: run the command again "
                f"({error.detail})",
            ) from error
        return job
