"""Logging: structlog rendering JSON lines (or a readable console when stdout is a TTY).

Standard-library loggers (``logging.getLogger("predis")``) go through the same processors via
``structlog.stdlib.ProcessorFormatter``, so every module keeps plain ``log.warning(...)``
calls. Nothing logs per request: the hot path stays free of formatting work.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any

import structlog

LEVELS = {"debug": logging.DEBUG, "verbose": logging.INFO, "notice": logging.WARNING,
          "warning": logging.WARNING, "nothing": logging.CRITICAL + 1}


def setup_logging(config: Any, stream: Any = None) -> logging.Logger:
    """Configure the ``predis`` logger tree from ``loglevel`` and ``logfile``."""
    level = LEVELS[config.loglevel]
    handler: logging.Handler
    if config.logfile:
        handler = logging.FileHandler(config.logfile)
        interactive = False
    else:
        stream = stream or sys.stdout
        handler = logging.StreamHandler(stream)
        interactive = hasattr(stream, "isatty") and stream.isatty()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_pid,
    ]
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=False) if interactive
                     else structlog.processors.JSONRenderer())
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info, renderer]))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger("predis")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if hasattr(config, "watch"):  # CONFIG SET loglevel applies at once
        config.watch("loglevel", lambda value: root.setLevel(LEVELS[value]))
    return root


def _add_pid(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    event["pid"] = os.getpid()
    return event
