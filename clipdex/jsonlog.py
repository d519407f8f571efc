"""``--json`` for the long-running commands (``serve``, ``worker``): one JSON start record on
stdout when the command is ready to start, then every log line as one JSON object on stderr
(``time``, ``level``, ``logger``, ``message``, and ``error`` with the traceback when there is
one), for log collectors that parse lines."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def start_record(command: str, **fields: Any) -> None:
    """``{"event": "start", "command": ..., ...}`` as one line on stdout, flushed."""
    print(json.dumps({"event": "start", "command": command, **fields}, default=str), flush=True)


def use_json(logger: logging.Logger, **_: Any) -> None:
    """Every handler of ``logger`` writes JSON lines (a Celery ``after_setup_*logger`` hook)."""
    for handler in logger.handlers:
        handler.setFormatter(JsonFormatter())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's logging with JSON lines on stderr, access log included."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": handler},
        "loggers": {
            name: {"handlers": ["default"], "level": "INFO", "propagate": False}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "clipdex")
        },
    }


def json_warning(message: str, logger: str = "clipdex") -> None:
    """A warning said before logging is set up, as one JSON line on stderr (the same fields)."""
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": "WARNING",
        "logger": logger,
        "message": message,
    }
    print(json.dumps(entry), file=sys.stderr, flush=True)
