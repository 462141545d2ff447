"""Structured JSON logs and CloudWatch Embedded Metric Format (EMF) metrics, stdlib only.

The ingress uses this module (its cold start leaves no room for Powertools; processors use
Powertools Logger and Metrics, shared/processing.py). Log records carry
business context (integration, delivery id, order id) and never payloads, secrets or personal
data: callers pass ids, not bodies. Keys that look like personal data are masked as a guard.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

_MASKED_KEYS = frozenset(
    {
        "email",
        "phone",
        "name",
        "first_name",
        "last_name",
        "address",
        "address1",
        "password",
        "secret",
        "token",
        "body",
    }
)


def _mask(context: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k.lower() in _MASKED_KEYS else v) for k, v in context.items()}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "level": record.levelname,
            "ts": round(record.created, 3),
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = getattr(record, "ctx", None)
        if isinstance(context, dict):
            doc.update(_mask(context))
        if record.exc_info and record.exc_info[0] is not None:
            doc["exception"] = record.exc_info[0].__name__
            doc["exception_message"] = str(record.exc_info[1])[:500]
        return json.dumps(doc, default=str, separators=(",", ":"))


def get_logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        logger.setLevel(os.environ.get("JUNCTION_LOG_LEVEL", "INFO").upper())
        logger.propagate = False
    return logger


def log(logger: logging.Logger, level: int, message: str, **context: Any) -> None:
    """Log ``message`` with business context as top-level JSON keys."""
    logger.log(level, message, extra={"ctx": context})


def emit_metrics(
    integration: str,
    metrics: dict[str, float],
    *,
    unit: str = "Count",
    namespace: str = "Junction",
    dimensions: dict[str, str] | None = None,
) -> None:
    """Print one EMF record; CloudWatch turns it into metrics without an API call."""
    dims = {"Integration": integration, **(dimensions or {})}
    doc: dict[str, Any] = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dims)],
                    "Metrics": [{"Name": name, "Unit": unit} for name in metrics],
                }
            ],
        },
        **dims,
        **metrics,
    }
    sys.stdout.write(json.dumps(doc, separators=(",", ":")) + "\n")
