"""Per-task stage timestamps, for finding where accept -> Running latency goes (bench/scale.py
--steady-only reads them). Off unless MESOSKUBE_TRACE names a file: then each stage is one line,
"<wall time> <stage> <key>", the wall clock being the one thing comparable with the timestamps the
bench takes in its own process. Diagnostics only: nothing decides on it, so it reads the real clock.
"""

from __future__ import annotations

import logging
import os
import time

_log = logging.getLogger("mesoskube.trace")
_log.propagate = False
_enabled = False


def setup(path: str | None = None) -> None:
    """Start writing stages to `path` (default: $MESOSKUBE_TRACE; nothing when neither is set)."""
    global _enabled
    path = path or os.environ.get("MESOSKUBE_TRACE")
    if not path or _enabled:
        return
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(message)s"))
    _log.addHandler(handler)
    _log.setLevel(logging.DEBUG)
    _enabled = True


def mark(stage: str, key: str) -> None:
    if _enabled:
        _log.debug("%.6f %s %s", time.time(), stage, key)
