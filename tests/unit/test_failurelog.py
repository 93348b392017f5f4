"""One warning per run of failures (failurelog.py): what an API server outage leaves in the log."""

from __future__ import annotations

import logging

from mesoskube.master.failurelog import FailureLog


def test_the_first_failure_warns_the_rest_are_debug_and_recovery_says_how_many(caplog) -> None:
    log = logging.getLogger("test.failurelog")
    f = FailureLog(log)
    with caplog.at_level(logging.DEBUG, logger="test.failurelog"):
        for i in range(5):
            f.failed("sweeps", "sweep %d failed", i)
        f.failed("creates", "create failed")  # another kind warns on its own
        f.succeeded("sweeps")
        f.succeeded("sweeps")  # nothing more to say
        f.failed("sweeps", "sweep failed again")
    levels = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert levels == [
        ("WARNING", "sweep 0 failed"),
        *[("DEBUG", f"sweep {i} failed") for i in range(1, 5)],
        ("WARNING", "create failed"),
        ("WARNING", "sweeps work again after 5 failures"),
        ("WARNING", "sweep failed again"),
    ]
