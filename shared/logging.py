"""One logging configuration for every process: structlog and the standard library's logging.

Every line — ours through structlog or `logging`, Celery's, uvicorn's, httpx's — goes through
the same structlog ProcessorFormatter on the root logger's handler, so it carries the context
bound with `structlog.contextvars` (the request being worked on) and comes out in one format:
`console` for people, `json` for machines (one object a line: timestamp in ISO 8601 UTC,
level, logger, event and the bound context).
"""

import logging
import sys
from pathlib import Path

import structlog
from structlog.typing import Processor

from shared.settings import LogFormat, get_settings

# uvicorn configures logging before it loads the app, so its own lines need this file (--log-config).
UVICORN_LOG_CONFIG = Path(__file__).with_name("uvicorn_log_config.json")

# The root handler this module installs: found again by its name, so configuring twice replaces
# it, and handlers others installed (pytest's) stay.
HANDLER_NAME = "service"

# httpx logs every request's URL at INFO, credentials included; the services log what they need themselves.
QUIET_LOGGERS = ("httpx",)


def shared_processors() -> list[Processor]:
    """What every line gets, whether it was logged through structlog or the standard library."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def renderer(log_format: LogFormat) -> list[Processor]:
    if log_format == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    # Colours only on a terminal: under supervisord they would be escape codes in a file. Plain
    # tracebacks: the default (rich, when installed) shows each frame's local variables, secrets included.
    return [
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback)
    ]


def formatter(log_format: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors(),
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderer(log_format)],
    )


def formatter_from_settings() -> structlog.stdlib.ProcessorFormatter:
    """The formatter of LOG_FORMAT, for uvicorn's --log-config (UVICORN_LOG_CONFIG names it)."""
    return formatter(get_settings().operations.log_format)


def configure_logging(
    log_format: LogFormat, level: int | str = logging.INFO, handler: logging.Handler | None = None
) -> None:
    """Send every log line of this process through one formatter of `log_format`, at `level` and
    above, to `handler` (standard error by default)."""
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = handler or logging.StreamHandler(sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for installed in [existing for existing in root.handlers if existing.get_name() == HANDLER_NAME]:
        root.removeHandler(installed)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Python's warnings would otherwise be printed to stderr as they are, outside the format.
    logging.captureWarnings(True)
