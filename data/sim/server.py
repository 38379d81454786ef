"""A local HTTP server that serves a `SimWorld` the way Reddit's OAuth API does, for praw 8 / prawcore 4.

    python -m data.sim.server --port 8765            # or `python -m pipelines sim-reddit`
    with SimRedditServer(SimWorld.generate(WorldConfig()), ServerConfig()) as server:
        reddit = praw.Reddit(client_id="sim", client_secret="sim", user_agent="upvote-rlhf sim",
                             oauth_url=server.base_url, reddit_url=server.base_url, short_url=server.base_url,
                             check_for_updates=False, check_for_async=False)

Why: the scraper must be tested against Reddit's real JSON shapes, rate-limit headers and failures without
ever reaching reddit.com. Endpoints (the paths praw requests, with or without a trailing slash):
  POST /api/v1/access_token                 token (HTTP Basic client auth; client_credentials/password/...)
  GET  /r/{sub}/{hot,new,top,controversial} Listing; limit <= 100, after/before, t, count; 1000-item cap
  GET  /r/{sub}/about                       t5 object
  GET  /comments/{id}/[slug/[comment_id]]   [post Listing, comment Listing] with `more` objects past `limit`
                                            (sort, limit, depth); /comments/{id}/_/{cid} continues a thread
  GET|POST /api/morechildren                {"json": {"errors": [], "data": {"things": [...]}}}
  GET  /api/info?id=t3_x,t1_y               Listing (at most 100 fullnames)
Every response carries x-ratelimit-remaining (float), -used (int) and -reset (int seconds); past the
budget of the current window the answer is 429. API calls need `Authorization: bearer <token>` (401
otherwise). Scores get a small per-read jitter like Reddit's vote fuzzing. Faults (429, 500, 503, a delay
past the client timeout, a truncated JSON body, a revoked token) are injected by seeded rates or by a
schedule of request numbers, so a scraper's retries can be tested deterministically.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import random
import re
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import BaseModel, ConfigDict, Field

from data.sim.background_http import BackgroundHTTPServer
from data.sim.world import SimWorld, WorldConfig

FaultKind = Literal["429", "500", "503", "delay", "truncated", "expired_token"]
FAULT_KINDS: tuple[str, ...] = ("429", "500", "503", "delay", "truncated", "expired_token")
TIME_FILTERS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400, "year": 365 * 86400}


class FaultConfig(BaseModel):
    """Injected failures of API requests (the token endpoint is never faulted)."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the per-request fault draws (same seed, same faults in order).")
    rates: dict[FaultKind, float] = Field(
        default_factory=dict, description="Fault kind -> probability per API request, e.g. {'500': 0.05}."
    )
    schedule: dict[int, FaultKind] = Field(
        default_factory=dict, description="API request number (1-based, in arrival order) -> fault to inject."
    )
    delay_seconds: float = Field(
        20.0, ge=0, description="Sleep of a 'delay' fault before answering (prawcore's default timeout is 16 s)."
    )


class ServerConfig(BaseModel):
    """How the simulated Reddit API behaves."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="Interface to bind (keep it local).")
    port: int = Field(0, ge=0, le=65535, description="Port; 0 picks a free ephemeral port.")
    requests_per_window: int = Field(
        100, ge=1, description="Rate-limit budget per window (Reddit's OAuth budget is ~100 requests/minute)."
    )
    window_seconds: float = Field(60.0, gt=0, description="Length of a rate-limit window in seconds.")
    token_lifetime_seconds: int = Field(3600, ge=1, description="expires_in of issued access tokens.")
    client_id: str | None = Field(None, description="If set, only this client id gets tokens.")
    client_secret: str | None = Field(None, description="If set, only this client secret gets tokens.")
    score_fuzz: float = Field(
        0.02, ge=0, description="Std of the per-read score jitter as a share of |score| (applied when >= 0.5 votes)."
    )
    fuzz_seed: int = Field(0, description="Seed of the score jitter.")
    listing_cap: int = Field(1000, ge=1, description="Reddit's cap on items reachable through one listing.")
    max_comment_limit: int = Field(500, ge=1, description="Largest `limit` honoured by /comments/{id}/.")
    default_comment_limit: int = Field(200, ge=1, description="`limit` of /comments/{id}/ when none is given.")
    morechildren_max: int = Field(100, ge=1, description="Most comments one /api/morechildren answer returns.")
    faults: FaultConfig = Field(default_factory=FaultConfig, description="Fault injection.")


class _Reply(Exception):
    """Raised inside a route to answer with this status, JSON payload and extra headers."""

    def __init__(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.payload, self.headers = status, payload, headers or {}


def _listing(children: list[dict[str, Any]], after: str | None = None, before: str | None = None) -> dict[str, Any]:
    return {"kind": "Listing", "data": {"after": after, "before": before, "dist": len(children), "modhash": None,
                                        "geo_filter": "", "children": children}}


def _error(status: int, message: str) -> _Reply:
    return _Reply(status, {"message": message, "error": status})


class SimRedditServer(BackgroundHTTPServer):
    """Serves `world` on `config.host:config.port` from a background thread; use as a context manager."""

    def __init__(self, world: SimWorld, config: ServerConfig | None = None) -> None:
        self.world = world
        self.config = config or ServerConfig()
        self._lock = threading.Lock()
        self._tokens: dict[str, float] = {}  # token -> expiry (monotonic seconds)
        self._fault_rng = random.Random(self.config.faults.seed)
        self._fuzz_rng = random.Random(self.config.fuzz_seed)
        self._t0 = time.monotonic()
        self._window_index = 0
        self._used = 0
        self._api_requests = 0
        self.counters: Counter[str] = Counter()
        self._sorted_cache: dict[tuple[str, str, str], list[dict[str, Any]]] = {}

    # ------------------------------------------------------------------ lifecycle (stop, base_url: BackgroundHTTPServer)
    def start(self) -> "SimRedditServer":
        handler = type("SimRedditHandler", (_Handler,), {"sim": self})
        return self._serve((self.config.host, self.config.port), handler, "sim-reddit")

    def serve_forever(self) -> None:
        """Blocks serving requests (for the CLI); Ctrl-C stops."""
        if self._httpd is None:
            self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ------------------------------------------------------------------ counters and limits
    def stats(self) -> dict[str, int]:
        """Request counters: `total`, `endpoint/<name>`, `status/<code>`, `fault/<kind>`, `rate_limited`
        (429s from the budget), `tokens_issued`."""
        with self._lock:
            return dict(self.counters)

    def reset_stats(self) -> None:
        with self._lock:
            self.counters.clear()

    def revoke_all_tokens(self) -> None:
        """Every issued token becomes invalid (the next API call gets 401 invalid_token)."""
        with self._lock:
            self._tokens.clear()

    def _rate_headers(self) -> dict[str, str]:
        cfg = self.config
        elapsed = time.monotonic() - self._t0
        reset = max(1, math.ceil((self._window_index + 1) * cfg.window_seconds - elapsed))
        return {
            "x-ratelimit-remaining": f"{max(0.0, float(cfg.requests_per_window - self._used)):.1f}",
            "x-ratelimit-used": str(self._used),
            "x-ratelimit-reset": str(reset),
        }

    def _admit(self, endpoint: str) -> tuple[dict[str, str], str | None, bool]:
        """Counts one API request against the window; returns (rate headers, fault to inject, over budget)."""
        cfg = self.config
        with self._lock:
            window = int((time.monotonic() - self._t0) // cfg.window_seconds)
            if window != self._window_index:
                self._window_index, self._used = window, 0
            self._used += 1
            self._api_requests += 1
            over = self._used > cfg.requests_per_window
            fault = cfg.faults.schedule.get(self._api_requests)
            u = self._fault_rng.random()  # drawn for every request so the sequence depends only on the count
            if fault is None:
                acc = 0.0
                for kind in FAULT_KINDS:
                    acc += cfg.faults.rates.get(kind, 0.0)  # type: ignore[arg-type]
                    if u < acc:
                        fault = kind
                        break
            self.counters["total"] += 1
            self.counters[f"endpoint/{endpoint}"] += 1
            if over:
                self.counters["rate_limited"] += 1
            elif fault:
                self.counters[f"fault/{fault}"] += 1
            return self._rate_headers(), (None if over else fault), over

    def _check_token(self, authorization: str | None) -> str | None:
        """The bearer token if it is valid, else None."""
        if not authorization or not authorization.lower().startswith("bearer "):
            return None
        token = authorization.split(" ", 1)[1].strip()
        with self._lock:
            expiry = self._tokens.get(token)
            if expiry is None:
                return None
            if time.monotonic() > expiry:
                del self._tokens[token]
                return None
        return token

    def _issue_token(self) -> dict[str, Any]:
        token = "sim-" + secrets.token_hex(16)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.config.token_lifetime_seconds
            self.counters["tokens_issued"] += 1
        return {"access_token": token, "token_type": "bearer", "expires_in": self.config.token_lifetime_seconds,
                "scope": "*"}

    # ------------------------------------------------------------------ JSON with fuzzed scores
    def _fuzz(self, score: int) -> int:
        sd = self.config.score_fuzz * abs(score)
        if sd < 0.5:
            return score
        with self._lock:
            return score + round(self._fuzz_rng.gauss(0.0, sd))

    def _post_json(self, post: dict[str, Any]) -> dict[str, Any]:
        data = dict(post)
        data["score"] = data["ups"] = self._fuzz(post["score"])
        return {"kind": "t3", "data": data}

    def _comment_json(self, comment: dict[str, Any], replies: Any = "") -> dict[str, Any]:
        data = dict(comment)
        data["score"] = data["ups"] = self._fuzz(comment["score"])
        data["replies"] = replies
        return {"kind": "t1", "data": data}

    # ------------------------------------------------------------------ routes
    def route(self, method: str, path: str, params: dict[str, str], headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """Answers one request: (status, JSON payload, extra headers). Also the place faults happen."""
        path = re.sub(r"\.json$", "", path.rstrip("/")) or "/"
        if path == "/api/v1/access_token":
            return self._route_token(method, headers)
        endpoint = _endpoint_name(path)
        rate_headers, fault, over = self._admit(endpoint)
        try:
            if over:
                raise _Reply(429, {"message": "Too Many Requests", "error": 429})
            token = self._check_token(headers.get("authorization"))
            if token is None:
                raise _Reply(401, {"message": "Unauthorized", "error": 401},
                             {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
            if fault == "expired_token":
                with self._lock:
                    self._tokens.pop(token, None)
                raise _Reply(401, {"message": "Unauthorized", "error": 401},
                             {"www-authenticate": 'Bearer realm="reddit", error="invalid_token"'})
            if fault in ("429", "500", "503"):
                raise _error(int(fault), {"429": "Too Many Requests", "500": "Internal Server Error",
                                          "503": "Service Unavailable"}[fault])
            payload = self._dispatch(method, path, params)
            status = 200
        except _Reply as reply:
            status, payload = reply.status, reply.payload
            rate_headers = {**rate_headers, **reply.headers}
        if fault == "delay":
            time.sleep(self.config.faults.delay_seconds)
        if fault == "truncated" and status == 200:
            rate_headers["x-sim-truncate"] = "1"
        with self._lock:
            self.counters[f"status/{status}"] += 1
        return status, payload, rate_headers

    def _route_token(self, method: str, headers: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.counters["endpoint/access_token"] += 1
            rate_headers = self._rate_headers()
        auth = headers.get("authorization", "")
        if method != "POST" or not auth.lower().startswith("basic "):
            return 401, {"message": "Unauthorized", "error": 401}, rate_headers
        try:
            client_id, _, secret = base64.b64decode(auth.split(" ", 1)[1]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return 401, {"message": "Unauthorized", "error": 401}, rate_headers
        cfg = self.config
        if (cfg.client_id and client_id != cfg.client_id) or (cfg.client_secret and secret != cfg.client_secret):
            return 401, {"message": "Unauthorized", "error": 401}, rate_headers
        return 200, self._issue_token(), rate_headers

    def _dispatch(self, method: str, path: str, params: dict[str, str]) -> Any:
        parts = [p for p in path.split("/") if p]
        if parts[:1] == ["r"] and len(parts) >= 2:
            sub = self._subreddit(parts[1])
            rest = parts[2:]
            if not rest:
                return self._listing(sub, "hot", params)
            if rest[0] in ("hot", "new", "top", "controversial", "rising") and len(rest) == 1:
                return self._listing(sub, "hot" if rest[0] == "rising" else rest[0], params)
            if rest == ["about"]:
                return self._about(sub)
            if rest[0] == "comments" and len(rest) >= 2:
                return self._comments(rest[1], rest[3] if len(rest) >= 4 else None, params)
        if parts[:1] == ["comments"] and len(parts) >= 2:
            return self._comments(parts[1], parts[3] if len(parts) >= 4 else None, params)
        if parts == ["api", "morechildren"]:
            return self._morechildren(params)
        if parts == ["api", "info"]:
            return self._info(params)
        raise _error(404, "Not Found")

    def _subreddit(self, name: str) -> str:
        for sub in self.world.config.subreddits:
            if sub.lower() == name.lower():
                return sub
        raise _error(404, "Not Found")

    def _about(self, sub: str) -> dict[str, Any]:
        pop = self.world.config.subreddits[sub]
        sid = self.world.subreddit_ids[sub]
        return {"kind": "t5", "data": {
            "display_name": sub, "display_name_prefixed": f"r/{sub}", "id": sid[3:], "name": sid,
            "title": sub, "public_description": f"The simulated r/{sub}.", "subscribers": int(pop * 1_000_000),
            "created_utc": 1_200_000_000.0, "over18": False, "subreddit_type": "public", "url": f"/r/{sub}/",
        }}

    def _sorted_posts(self, sub: str, sort: str, t: str) -> list[dict[str, Any]]:
        key = (sub, sort, t if sort in ("top", "controversial") else "all")
        if key not in self._sorted_cache:
            now = self.world.config.now_utc
            posts = [p for p in self.world.posts if p["subreddit"] == sub]
            if key[2] in TIME_FILTERS:
                posts = [p for p in posts if p["created_utc"] >= now - TIME_FILTERS[key[2]]]
            if sort == "new":
                posts.sort(key=lambda p: -p["created_utc"])
            elif sort == "top":
                posts.sort(key=lambda p: (-p["score"], -p["created_utc"]))
            elif sort == "controversial":
                posts.sort(key=lambda p: -_controversy(p))
            else:
                posts.sort(key=lambda p: -_hot(p))
            self._sorted_cache[key] = posts[: self.config.listing_cap]
        return self._sorted_cache[key]

    def _listing(self, sub: str, sort: str, params: dict[str, str]) -> dict[str, Any]:
        t = params.get("t", "day" if sort in ("top", "controversial") else "all")
        if t not in (*TIME_FILTERS, "all"):
            raise _error(400, f"bad time filter t={t!r}")
        posts = self._sorted_posts(sub, sort, t)
        limit = _int_param(params, "limit", 25, lo=1, hi=100)
        start = 0
        if params.get("after"):
            names = [p["name"] for p in posts]
            if params["after"] not in names:
                return _listing([])
            start = names.index(params["after"]) + 1
        elif params.get("before"):
            names = [p["name"] for p in posts]
            end = names.index(params["before"]) if params["before"] in names else 0
            start = max(0, end - limit)
        page = posts[start: start + limit]
        after = page[-1]["name"] if page and start + limit < len(posts) else None
        before = page[0]["name"] if page and start > 0 else None
        return _listing([self._post_json(p) for p in page], after, before)

    def _sorted_children(self, parent: str, sort: str) -> list[str]:
        ids = self.world.children.get(parent, [])
        cs = [self.world.comments[c] for c in ids]
        if sort == "new":
            cs.sort(key=lambda c: -c["created_utc"])
        elif sort == "old":
            cs.sort(key=lambda c: c["created_utc"])
        elif sort == "controversial":
            cs.sort(key=lambda c: abs(c["score"]))
        else:  # confidence, top, best, qa
            cs.sort(key=lambda c: -c["score"])
        cs.sort(key=lambda c: not c["stickied"])  # stable: stickied first
        return [c["id"] for c in cs]

    def _subtree_ids(self, cid: str, sort: str) -> list[str]:
        """`cid` and its descendants in preorder."""
        out = [cid]
        for child in self._sorted_children(f"t1_{cid}", sort):
            out += self._subtree_ids(child, sort)
        return out

    def _comments(self, post_id: str, focus: str | None, params: dict[str, str]) -> list[dict[str, Any]]:
        post = self.world.posts_by_id.get(post_id)
        if post is None:
            raise _error(404, "Not Found")
        sort = params.get("sort", "confidence")
        limit = _int_param(params, "limit", self.config.default_comment_limit, lo=1, hi=self.config.max_comment_limit)
        max_depth = _int_param(params, "depth", 10_000, lo=0, hi=10_000)
        budget = [limit]

        def build(ids: list[str], parent: str, depth: int) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for i, cid in enumerate(ids):
                if depth >= max_depth:  # "continue this thread": reachable through /comments/{id}/_/{parent}
                    out.append(_more([], parent, depth, count=0))
                    break
                if budget[0] <= 0:
                    rest = [x for c in ids[i:] for x in self._subtree_ids(c, sort)]
                    out.append(_more(rest, parent, depth))
                    break
                budget[0] -= 1
                kids = build(self._sorted_children(f"t1_{cid}", sort), f"t1_{cid}", depth + 1)
                out.append(self._comment_json(self.world.comments[cid], _listing(kids) if kids else ""))
            return out

        if focus is not None:
            if focus not in self.world.comments or self.world.comments[focus]["link_id"] != post["name"]:
                raise _error(404, "Not Found")
            tree = build([focus], self.world.comments[focus]["parent_id"], 0)
        else:
            tree = build(self._sorted_children(post["name"], sort), post["name"], 0)
        return [_listing([self._post_json(post)]), _listing(tree)]

    def _morechildren(self, params: dict[str, str]) -> dict[str, Any]:
        link_id = params.get("link_id", "")
        post = self.world.posts_by_id.get(link_id[3:] if link_id.startswith("t3_") else link_id)
        if post is None:
            raise _error(400, "link_id must be the fullname of a post (t3_...)")
        wanted = {c.strip() for c in params.get("children", "").split(",") if c.strip()}
        wanted = {c[3:] if c.startswith("t1_") else c for c in wanted}
        sort = params.get("sort", "confidence")
        # Preorder over the whole tree keeps every parent before its children (praw inserts by parent_id).
        order = [x for top in self._sorted_children(post["name"], sort) for x in self._subtree_ids(top, sort)]
        hits = [cid for cid in order if cid in wanted]
        cap = self.config.morechildren_max
        things: list[dict[str, Any]] = [self._comment_json(self.world.comments[c]) for c in hits[:cap]]
        if len(hits) > cap:
            things.append(_more(hits[cap:], post["name"], 0))
        return {"json": {"errors": [], "data": {"things": things}}}

    def _info(self, params: dict[str, str]) -> dict[str, Any]:
        names = [n.strip() for n in params.get("id", "").split(",") if n.strip()]
        if len(names) > 100:
            raise _error(400, "at most 100 fullnames per /api/info request")
        out = []
        for name in names:
            kind, _, thing_id = name.partition("_")
            if kind == "t3" and thing_id in self.world.posts_by_id:
                out.append(self._post_json(self.world.posts_by_id[thing_id]))
            elif kind == "t1" and thing_id in self.world.comments:
                out.append(self._comment_json(self.world.comments[thing_id]))
        return _listing(out)


def _more(children: list[str], parent: str, depth: int, count: int | None = None) -> dict[str, Any]:
    """A `more` object: the ids left out (count 0 and no ids means 'continue this thread')."""
    first = children[0] if children else "_"
    return {"kind": "more", "data": {"count": len(children) if count is None else count, "name": f"t1_{first}",
                                     "id": first, "parent_id": parent, "depth": depth, "children": children}}


def _hot(post: dict[str, Any]) -> float:
    """Reddit's hot rank: log10 of the score plus time (newer is hotter)."""
    s = post["score"]
    return math.copysign(math.log10(max(abs(s), 1)), s) + (post["created_utc"] - 1134028003) / 45000.0


def _controversy(post: dict[str, Any]) -> float:
    """Reddit's controversy: many votes, evenly split."""
    r, s = post["upvote_ratio"], post["score"]
    if r <= 0.5 or s <= 0:
        return 0.0
    ups = s * r / (2 * r - 1)
    downs = ups - s
    if downs <= 0:
        return 0.0
    return (ups + downs) ** (min(ups, downs) / max(ups, downs))


def _int_param(params: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = params.get(key)
    if raw in (None, ""):
        return default
    try:
        return max(lo, min(hi, int(raw)))
    except ValueError:
        raise _error(400, f"query parameter {key}={raw!r} is not an integer") from None


def _endpoint_name(path: str) -> str:
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["r"] and len(parts) >= 3:
        return "listing" if parts[2] in ("hot", "new", "top", "controversial", "rising") else parts[2]
    if parts[:1] == ["r"]:
        return "listing"
    if parts[:1] == ["comments"]:
        return "comments"
    if parts[:1] == ["api"] and len(parts) >= 2:
        return parts[1]
    return "other"


class _Handler(BaseHTTPRequestHandler):
    sim: SimRedditServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm on, a keep-alive client's delayed ACK
    # stalls every response by ~40 ms (7x fewer requests/s through praw's session).
    disable_nagle_algorithm = True
    server_version = "SimReddit/1.0"

    def _params(self) -> tuple[str, dict[str, str]]:
        split = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        length = int(self.headers.get("content-length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8", errors="replace")
            if "json" in (self.headers.get("content-type") or ""):
                try:
                    params.update({k: str(v) for k, v in json.loads(body).items()})
                except (ValueError, AttributeError):
                    pass
            else:
                params.update({k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()})
        return split.path, params

    def _handle(self, method: str) -> None:
        path, params = self._params()
        headers = {k.lower(): v for k, v in self.headers.items()}
        status, payload, extra = self.sim.route(method, path, params, headers)
        body = json.dumps(payload).encode()
        if extra.pop("x-sim-truncate", None):
            body = body[: max(1, len(body) // 2)]  # a complete HTTP answer whose JSON is cut off
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json; charset=UTF-8")
            self.send_header("content-length", str(len(body)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a 'delay' fault past its timeout)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: counters are in SimRedditServer.stats()


def main(argv: list[str] | None = None) -> None:
    """`python -m data.sim.server`: generate a world and serve it until Ctrl-C."""
    ap = argparse.ArgumentParser(description="Serve a simulated Reddit on 127.0.0.1 in Reddit's API JSON shape.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--posts-per-subreddit", type=int, default=WorldConfig().posts_per_subreddit)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--requests-per-window", type=int, default=ServerConfig().requests_per_window)
    ap.add_argument("--window-seconds", type=float, default=ServerConfig().window_seconds)
    args = ap.parse_args(argv)
    world = SimWorld.generate(WorldConfig(seed=args.seed, posts_per_subreddit=args.posts_per_subreddit), progress=True)
    server = SimRedditServer(world, ServerConfig(host=args.host, port=args.port,
                                                 requests_per_window=args.requests_per_window,
                                                 window_seconds=args.window_seconds)).start()
    print(f"simulated Reddit: {len(world.posts)} posts, {len(world.comments)} comments at {server.base_url}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
