"""Retries of the driver's writes (answers, kills, revives, lease renewals) on transient errors.

Transient: the request may not have reached etcd, and asking again may work: a reset or refused
connection, a urllib3 ProtocolError, a timeout, HTTP 429 and 5xx, and the 422 a restarted API
server gives while its admission policies cannot find their param kind yet. Everything else (400,
403, 404, 409, 422, ...) is an answer and goes back to the caller at once.

Asking again can meet our own earlier attempt: a create the server applied before the connection
dropped answers 409 on the retry. The caller says, per call, which errors on a *retry* mean "already
applied" (`applied`), and those count as success.

Backoff is tenacity's exponential with jitter; the sleeper and the clock are injected so tests
run without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity
import urllib3
from kubernetes.client.exceptions import ApiException

from mesoskube.kube import not_ready

log = logging.getLogger(__name__)

T = TypeVar("T")
TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})


class Applied:
    """What `WritePolicy.call` returns when a retry met the effect of an earlier attempt."""

    def __repr__(self) -> str:
        return "APPLIED"


APPLIED = Applied()


def is_transient(e: BaseException) -> bool:
    if isinstance(e, ApiException):
        if not_ready(e.status, str(e.body or "")):  # the server's state, not the request's (kube.py)
            return True
        return not e.status or e.status in TRANSIENT_STATUS  # status 0: no HTTP answer at all
    # ProtocolError, MaxRetryError, ReadTimeoutError, NewConnectionError are urllib3 HTTPErrors.
    return isinstance(e, urllib3.exceptions.HTTPError | ConnectionError | TimeoutError)


def describe(e: BaseException) -> str:
    if isinstance(e, ApiException):
        return f"HTTP {e.status} {e.reason}"
    return f"{type(e).__name__}: {e}"


@dataclass
class WritePolicy:
    sleep: Callable[[float], Any] = time.sleep
    clock: Callable[[], float] = time.monotonic
    deadline: float = 120.0  # seconds of retrying before the error goes to the caller
    initial: float = 0.1
    maximum: float = 5.0

    def call(
        self,
        fn: Callable[[], T],
        what: str,
        applied: Callable[[ApiException], bool] | None = None,
        give_up: Callable[[], bool] | None = None,
        deadline: float | None = None,
    ) -> T | Applied:
        """fn() until it succeeds, fails for good, `give_up()` turns true, or the deadline passes
        (then the last error is raised)."""
        attempts = 0
        start = self.clock()
        limit = self.deadline if deadline is None else deadline

        def once() -> T | Applied:
            nonlocal attempts
            attempts += 1
            try:
                return fn()
            except ApiException as e:
                if attempts > 1 and applied is not None and applied(e):
                    log.info("%s: an earlier attempt was applied (%s)", what, describe(e))
                    return APPLIED
                raise

        def stop(state: tenacity.RetryCallState) -> bool:
            return (give_up is not None and give_up()) or self.clock() - start >= limit

        def before_sleep(state: tenacity.RetryCallState) -> None:
            e = state.outcome.exception() if state.outcome else None
            log.warning(
                "%s failed (%s); retry %d in %.2fs", what, describe(e), attempts, state.upcoming_sleep
            )

        retrying = tenacity.Retrying(
            sleep=self.sleep,
            stop=stop,
            wait=tenacity.wait_exponential(multiplier=self.initial, max=self.maximum)
            + tenacity.wait_random(0, self.initial / 2),
            retry=tenacity.retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(once)
