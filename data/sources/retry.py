"""Bounded exponential backoff around one unit of Reddit work (a listing page, a thread, an info batch).

prawcore already retries a request twice on 5xx, connection errors, read timeouts and 401 (after dropping
the token), and paces requests by the `x-ratelimit-*` headers. What it does not do, and this does:

- 429 Too Many Requests raises at once in prawcore: we wait `Retry-After` (or the rate-limit reset) and retry;
- a body that is not JSON (a truncated response) raises `BadJSON` with no retry;
- its two retries can all fail during a longer outage or a revoked token: we back off and try again, with a
  re-authentication hook for `InvalidToken`.

Answers that retrying cannot change are not retried: 404 (a removed or banned thread, a subreddit that does
not exist), 403 (private, quarantined) and 451 (blocked for legal reasons). `final_answer` names them, so the
scraper can skip and count them instead of dying (reddit.com gives them every day).

Every retry is counted by kind, so a scrape reports what it weathered. The wait is bounded (`max_delay_s`)
and so is the number of attempts: a dead server ends the run with a clear `RetriesExhausted`, not a hang.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from typing import Callable, TypeVar

import requests
from prawcore import exceptions as pex
from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)
T = TypeVar("T")


class RetryConfig(BaseModel):
    """How often and how long to retry a failed unit of work."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(8, ge=1, description="Attempts per unit of work (a page, a thread, a batch).")
    base_delay_s: float = Field(1.0, ge=0.0, description="First backoff wait; doubles on each further failure.")
    max_delay_s: float = Field(60.0, ge=0.0, description="Upper bound of one backoff wait (and of Retry-After).")
    jitter: float = Field(0.25, ge=0.0, le=1.0, description="Random extra wait as a fraction of the backoff.")


class RetriesExhausted(RuntimeError):
    """A unit of work failed `max_attempts` times; the scrape state on disk is intact and can be resumed."""


def classify(err: BaseException) -> str | None:
    """The retry kind of an error, or None when retrying cannot help (404, 403, a bug)."""
    if isinstance(err, pex.TooManyRequests):
        return "rate_limited"
    if isinstance(err, pex.ServerError):
        return "server_error"
    if isinstance(err, pex.InvalidToken):
        return "invalid_token"
    if isinstance(err, pex.BadJSON) or isinstance(err, json.JSONDecodeError):
        return "bad_json"
    if isinstance(err, pex.RequestException):
        original = err.original_exception
        if isinstance(original, requests.exceptions.Timeout):
            return "timeout"
        if isinstance(original, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
            return "connection"
        if isinstance(original, (requests.exceptions.ContentDecodingError, ValueError)):
            return "bad_json"
        return None
    if isinstance(err, pex.ResponseException) and err.response.status_code in (408, 502, 503, 504, 520, 522):
        return "server_error"
    return None


def final_answer(err: BaseException) -> str | None:
    """`not_found` / `forbidden` / `unavailable` for reddit.com's final refusals (404 or 410, 403, 451), else None.

    A subreddit that does not exist redirects to the search page (prawcore's `Redirect`): `not_found` too.
    `InsufficientScope` and `InvalidToken` are credential problems, not refusals of one item: not listed.
    """
    if isinstance(err, (pex.NotFound, pex.Redirect)):
        return "not_found"
    if isinstance(err, pex.Forbidden):
        return "forbidden"
    if isinstance(err, pex.UnavailableForLegalReasons):
        return "unavailable"
    if isinstance(err, pex.ResponseException) and type(err) is pex.ResponseException \
            and err.response.status_code == 410:
        return "not_found"
    return None


def _retry_after(err: BaseException) -> float | None:
    """Seconds the server asked us to wait (`Retry-After`, else `x-ratelimit-reset` on a 429)."""
    response = getattr(err, "response", None)
    if response is None:
        return None
    for header in ("retry-after", "x-ratelimit-reset"):
        value = response.headers.get(header)
        if value is not None:
            try:
                return max(0.0, float(value))
            except ValueError:
                continue
    return None


def with_retries(
    fn: Callable[[], T],
    *,
    what: str,
    cfg: RetryConfig,
    counts: Counter[str],
    reauth: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run `fn` until it succeeds, retrying retryable errors with bounded exponential backoff.

    `counts[kind]` is increased per retry; `reauth` is called before retrying an `InvalidToken`.
    """
    for attempt in range(cfg.max_attempts):
        try:
            return fn()
        except Exception as err:  # noqa: BLE001 - classified below; anything unknown is re-raised
            kind = classify(err)
            if kind is None:
                raise
            if attempt + 1 >= cfg.max_attempts:
                raise RetriesExhausted(
                    f"{what}: failed {cfg.max_attempts} times, last error {type(err).__name__} ({kind}); "
                    "rerun to resume from the saved state"
                ) from err
            counts[kind] += 1
            delay = min(cfg.max_delay_s, cfg.base_delay_s * 2**attempt)
            delay *= 1.0 + cfg.jitter * random.random()
            if kind == "rate_limited" and (asked := _retry_after(err)) is not None:
                delay = min(cfg.max_delay_s, max(delay, asked))
            if kind == "invalid_token" and reauth is not None:
                reauth()
            log.warning("%s: %s, retry %d/%d in %.2fs", what, kind, attempt + 1, cfg.max_attempts - 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")
