"""The praw client the scraper talks through: credentials from the environment, the API's URLs, a request count.

    reddit = make_reddit(ScrapeConfig())     # REDDIT_CLIENT_ID / REDDIT_CLIENT_SECRET / REDDIT_USER_AGENT set

Credentials come only from the environment or a praw.ini site (`scrape.praw_site`); they are never stored.
The simulated Reddit, or a replay of recorded traffic, is just another `oauth_url` (or REDDIT_OAUTH_URL).
"""

from __future__ import annotations

import configparser
import logging
import os
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable

import praw
import requests
from praw.exceptions import MissingRequiredAttributeException

if TYPE_CHECKING:  # the scraper's config; data.sources.reddit_api imports this module
    from data.sources.reddit_api import ScrapeConfig

log = logging.getLogger(__name__)

ENV_ID, ENV_SECRET, ENV_AGENT = "REDDIT_CLIENT_ID", "REDDIT_CLIENT_SECRET", "REDDIT_USER_AGENT"
# praw 8 reads no environment variable for its URLs (`praw_oauth_url` is ignored), so we read these.
ENV_OAUTH_URL, ENV_REDDIT_URL = "REDDIT_OAUTH_URL", "REDDIT_URL"


class MissingCredentials(RuntimeError):
    """No Reddit API credentials in the environment or praw.ini."""


class RequestCounter:
    """A `requests` response hook: counts every HTTP exchange (token calls and retries included)."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        self.statuses[str(response.status_code)] += 1

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


def make_reddit(cfg: ScrapeConfig, session: requests.Session | None = None) -> praw.Reddit:
    """A read-only praw client from environment credentials (or `cfg.praw_site`), pointed at `cfg`'s URLs."""
    urls: dict[str, str] = {}
    oauth_url = cfg.oauth_url or os.environ.get(ENV_OAUTH_URL)
    reddit_url = cfg.reddit_url or os.environ.get(ENV_REDDIT_URL)
    if oauth_url:
        urls["oauth_url"] = oauth_url.rstrip("/")
    if reddit_url:
        urls["reddit_url"] = urls["short_url"] = reddit_url.rstrip("/")
    if urls:
        log.info("Reddit API at %s (tokens at %s)", urls.get("oauth_url", "https://oauth.reddit.com"),
                 urls.get("reddit_url", "https://www.reddit.com"))
    common = dict(
        check_for_updates=False,  # else praw asks the package index at start
        check_for_async=False,
        timeout=int(max(1, round(cfg.request_timeout_s))),
        window_size=cfg.ratelimit_window_s,
        requestor_kwargs={"session": session} if session is not None else None,
        **urls,
    )
    help_text = (
        f"set {ENV_ID} and {ENV_SECRET} (a 'script' app from https://www.reddit.com/prefs/apps) and "
        f"{ENV_AGENT}, or name a praw.ini site in scrape.praw_site; or run `make scrape SOURCE=sim` to scrape "
        "the simulated Reddit, which needs no account"
    )
    user_agent = os.environ.get(ENV_AGENT) or cfg.user_agent or "python:upvote-rlhf:0.1 (research scraper)"
    if cfg.praw_site is not None:
        try:
            return praw.Reddit(cfg.praw_site, user_agent=user_agent, **common)
        except (MissingRequiredAttributeException, configparser.Error, KeyError, ValueError) as err:
            first_line = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise MissingCredentials(
                f"praw.ini site {cfg.praw_site!r} is missing or incomplete ({first_line}); {help_text}"
            ) from None
    client_id, secret = os.environ.get(ENV_ID), os.environ.get(ENV_SECRET)
    missing = [name for name, value in ((ENV_ID, client_id), (ENV_SECRET, secret)) if not value]
    if missing:
        raise MissingCredentials(f"no Reddit API credentials: {', '.join(missing)} not set; {help_text}")
    return praw.Reddit(client_id=client_id, client_secret=secret, user_agent=user_agent, **common)


def reauth(reddit: praw.Reddit) -> Callable[[], None]:
    """Forget the access token, so the next request fetches a new one (after a revoked/expired token)."""

    def run() -> None:
        # prawcore's authorizer refreshes lazily when `access_token` is None (`is_valid()` is False).
        reddit._core.authorizer.access_token = None  # praw exposes the session only as `_core`

    return run


def as_json(thing: Any) -> dict:
    """A praw Submission/Comment back to Reddit's JSON `data` (praw turns author/subreddit into objects)."""
    data = {k: v for k, v in vars(thing).items() if not k.startswith("_")}
    for key in ("author", "subreddit"):
        if key in data:
            data[key] = None if data[key] is None else str(data[key])
    return data
