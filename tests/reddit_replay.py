"""A local reddit.com that replays recorded API traffic (praw's vcrpy cassettes) to the real praw client.

    python -m tests.reddit_replay tests/fixtures/reddit_cassettes/*.json --port 8766   # until Ctrl-C
    with RedditReplay.from_files(paths, faults=[Fault("429", at={3})]) as replay:
        scrape(ScrapeConfig(oauth_url=replay.base_url, reddit_url=replay.base_url, ...), out)

Why: the scraper must be tested on what reddit.com really sends (old and new field sets, `[deleted]`
comments, `more` stubs, 404s for threads it will not show), through the real praw client, offline.

A cassette is JSON: `{"interactions": [{"request": {"method", "uri", "body"}, "response": {"status":
{"code"}, "headers", "body": {"string"}}}]}`. Our scraper asks with other `limit`/`sort`/`t` values than the
recording did, so requests are matched leniently, on what selects the content:
- `POST /api/v1/access_token`: a fresh token for any client id/secret (HTTP Basic auth required).
- `GET /r/{sub}/{listing}`: the recorded page of that path (case-insensitive, as on reddit.com) with the
  same `after`/`before` cursor, cut to `limit` when that is below the recording's; an unrecorded cursor gets
  an empty listing (reddit.com's answer past the end).
- `GET /comments/{id}/[slug/[comment]]`: the recorded page of that thread and focus comment.
- `POST /api/morechildren`: the recording whose form field `children` names the same comment ids.
- `GET /api/info?id=...`: the recording with the same ids, else the recorded objects with those fullnames
  (objects reddit.com no longer has are left out, as it does).
- anything else: 404, reddit.com's answer for a removed, private or banned thread; counted as `unmatched`.
API requests need the issued bearer token (401 otherwise), so praw's token flow is exercised too.

Faults (`Fault`), by API request number (1-based, token requests not counted) or by a regex on the path:
`429` (with Retry-After and x-ratelimit-* headers), `500`/`502`/`503`/`504`, the final answers `403`/`404`/
`451` (private, removed, legal), `truncated` (a complete 200 answer whose JSON is cut in half), `cut` (the
connection closes mid-body), `drop` (the connection closes before any answer), `deleted` (the thread page
shows its post deleted by the author, as after a deletion between listing and thread request; for a thread
with no recording the page is made of the post recorded in a listing, with no comments).
Stdlib only, so `python -m tests.reddit_replay` runs without the project installed.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qs, urlsplit

from data.sim.background_http import BackgroundHTTPServer

FAULT_KINDS = ("429", "500", "502", "503", "504", "403", "404", "451", "truncated", "cut", "drop", "deleted")
ERROR_BODIES = {  # the shapes reddit.com answers with
    "403": {"reason": "private", "message": "Forbidden", "error": 403},
    "404": {"message": "Not Found", "error": 404},
    "429": {"message": "Too Many Requests", "error": 429},
    "451": {"reason": "legal", "message": "Unavailable For Legal Reasons", "error": 451},
}
IGNORED_PARAMS = {"raw_json", "limit", "sort", "t", "count", "context", "depth", "api_type", "link_id", "sr_detail"}


@dataclass(frozen=True)
class Recording:
    """One recorded response and where it came from (`source` = "file.json#index")."""

    source: str
    method: str
    path: str
    params: dict[str, str]
    status: int
    body: str
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Fault:
    """An injected failure: at the API request numbers in `at`, or the first `times` requests whose path
    matches the regex `path` (None: every time)."""

    kind: str
    at: set[int] = field(default_factory=set)
    path: str | None = None
    times: int | None = 1
    retry_after: float = 1.0
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Fault.kind must be one of {FAULT_KINDS}, got {self.kind!r}")
        if not self.at and self.path is None:
            raise ValueError("a Fault needs request numbers (`at`) or a path regex (`path`)")


@dataclass
class Exchange:
    """One answered API request, for tests to check what was served."""

    number: int
    method: str
    path: str
    status: int
    recording: Recording | None
    fault: str | None


def _norm_path(path: str) -> str:
    return re.sub(r"\.json$", "", path.rstrip("/")).lower() or "/"


def _key(method: str, path: str, params: dict[str, str]) -> tuple:
    """What selects a response's content (see the module docstring)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["r"] and len(parts) >= 4 and parts[2] == "comments":
        parts = parts[2:]  # /r/{sub}/comments/{id}/... is the same thread page
    if parts[:1] == ["comments"] and len(parts) >= 2:
        return ("thread", parts[1], parts[3] if len(parts) >= 4 else None)
    if parts == ["api", "morechildren"]:
        return ("more", frozenset(c for c in params.get("children", "").split(",") if c))
    if parts == ["api", "info"]:
        if "id" in params:
            return ("info", frozenset(params["id"].split(",")))
        return ("info-other", tuple(sorted(params.items())))
    if parts[:1] == ["r"] and len(parts) <= 3 and method == "GET":
        return ("listing", "/".join(parts), params.get("after"), params.get("before"))
    rest = tuple(sorted((k, v) for k, v in params.items() if k not in IGNORED_PARAMS))
    return ("other", method, "/".join(parts), rest)


def _params(query: str, body: str | None, content_type: str = "") -> dict[str, str]:
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if body:
        if "json" in content_type:
            try:
                params.update({k: str(v) for k, v in json.loads(body).items()})
            except (ValueError, AttributeError):
                pass
        else:
            params.update({k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()})
    return params


def load_cassette(path: str | Path) -> list[Recording]:
    """The API interactions of one cassette file (token requests are answered fresh, not replayed)."""
    path = Path(path)
    data = json.loads(path.read_text())
    out = []
    for i, it in enumerate(data["interactions"]):
        req, resp = it["request"], it["response"]
        split = urlsplit(req["uri"])
        if split.path.rstrip("/") == "/api/v1/access_token":
            continue
        headers = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
        ctype = headers.get("content-type", ["application/json; charset=UTF-8"])
        out.append(Recording(
            source=f"{path.name}#{i}", method=req["method"].upper(), path=_norm_path(split.path),
            params=_params(split.query, req.get("body")), status=int(resp["status"]["code"]),
            body=resp["body"]["string"], content_type=ctype[0] if isinstance(ctype, list) else ctype))
    return out


class RedditReplay(BackgroundHTTPServer):
    """Serves recordings on 127.0.0.1 (an ephemeral port by default) from a background thread."""

    def __init__(self, recordings: Iterable[Recording], faults: Iterable[Fault] = (), host: str = "127.0.0.1",
                 port: int = 0, any_sort: bool = False) -> None:
        """`any_sort`: a listing sort that was not recorded (`/r/askreddit/top`) is answered with a recorded sort
        of the same subreddit (`/r/askreddit/hot`): the posts are real, only their order is not that sort's. It
        lets a config written for reddit.com (top of the month) run against the recordings unchanged."""
        self.any_sort = any_sort
        self.recordings: dict[tuple, Recording] = {}
        for rec in recordings:
            self.recordings.setdefault(_key(rec.method, rec.path, rec.params), rec)  # repeats: first wins
        self.faults = list(faults)
        self.host, self.port = host, port
        self.counters: Counter[str] = Counter()
        self.log: list[Exchange] = []
        self._tokens: set[str] = set()
        self._api_requests = 0
        self._things: dict[str, dict] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_files(cls, paths: Iterable[str | Path], **kw: Any) -> "RedditReplay":
        return cls([rec for p in paths for rec in load_cassette(p)], **kw)

    # ------------------------------------------------------------------ lifecycle (stop, base_url: BackgroundHTTPServer)
    def start(self) -> "RedditReplay":
        handler = type("ReplayHandler", (_Handler,), {"replay": self})
        return self._serve((self.host, self.port), handler, "reddit-replay")

    def served(self, kind: str | None = None) -> list[Recording]:
        """The recordings served with status 200 and no fault, in order (`kind`: "thread", "more", ...)."""
        return [e.recording for e in self.log if e.recording is not None and e.fault is None and e.status == 200
                and (kind is None or _key(e.recording.method, e.recording.path, e.recording.params)[0] == kind)]

    # ------------------------------------------------------------------ answers
    def token(self, authorization: str | None) -> tuple[int, bytes, dict[str, str]]:
        with self._lock:
            self.counters["endpoint/access_token"] += 1
            if not (authorization or "").lower().startswith("basic "):
                return 401, b'{"message": "Unauthorized", "error": 401}', {}
            token = "replay-" + secrets.token_hex(8)
            self._tokens.add(token)
        body = {"access_token": token, "token_type": "bearer", "expires_in": 3600, "scope": "*"}
        return 200, json.dumps(body).encode(), {}

    def _fault(self, number: int, path: str) -> Fault | None:
        for f in self.faults:
            if number in f.at:
                return f
            if f.path is not None and re.search(f.path, path) and (f.times is None or f.fired < f.times):
                f.fired += 1
                return f
        return None

    def answer(self, method: str, path: str, params: dict[str, str],
               authorization: str | None) -> tuple[int, bytes, dict[str, str], str | None]:
        """(status, body, headers, fault kind) for one API request."""
        norm = _norm_path(path)
        key = _key(method, norm, params)
        with self._lock:
            self._api_requests += 1
            number = self._api_requests
            fault = self._fault(number, norm)
            kind = fault.kind if fault else None
            self.counters["total"] += 1
            self.counters[f"endpoint/{key[0]}"] += 1
            if kind:
                self.counters[f"fault/{kind}"] += 1
            scheme, _, token = (authorization or "").partition(" ")
            token_ok = scheme.lower() == "bearer" and token.strip() in self._tokens
        rec: Recording | None = None
        headers = {"content-type": "application/json; charset=UTF-8"}
        if not token_ok:
            status, body = 401, json.dumps({"message": "Unauthorized", "error": 401}).encode()
            headers["www-authenticate"] = 'Bearer realm="reddit", error="invalid_token"'
        elif fault is not None and kind == "429":
            status, body = 429, json.dumps(ERROR_BODIES["429"]).encode()
            headers.update({"retry-after": f"{fault.retry_after:g}", "x-ratelimit-remaining": "0",
                            "x-ratelimit-used": "600", "x-ratelimit-reset": "1"})
        elif kind in ("500", "502", "503", "504"):
            status, body = int(kind), b"<html><body><h1>upstream error</h1></body></html>"
            headers["content-type"] = "text/html; charset=UTF-8"
        elif kind in ("403", "404", "451"):
            status, body = int(kind), json.dumps(ERROR_BODIES[kind]).encode()
        else:
            status, body, rec = self._replay(key, params)
            if rec is not None:
                headers["content-type"] = rec.content_type
            if kind == "deleted" and key[0] == "thread":
                status, body = self._deleted_thread(key[1], status, body)
        with self._lock:
            self.counters[f"status/{status}"] += 1
            if status == 404 and kind is None and rec is None:
                self.counters["unmatched"] += 1
            self.log.append(Exchange(number, method, norm, status, rec, kind))
        return status, body, headers, kind

    def _replay(self, key: tuple, params: dict[str, str]) -> tuple[int, bytes, Recording | None]:
        rec = self.recordings.get(key)
        if rec is None and self.any_sort and key[0] == "listing" and not (key[2] or key[3]):
            subreddit = key[1].split("/")[:2]
            rec = next((r for k, r in sorted(self.recordings.items(), key=lambda kv: str(kv[0]))
                        if k[0] == "listing" and k[1].split("/")[:2] == subreddit and not (k[2] or k[3])), None)
        if rec is not None:
            if key[0] == "listing" and rec.status == 200:
                return 200, _cut_listing(rec, params.get("limit")), rec
            return rec.status, rec.body.encode(), rec
        if key[0] == "listing" and (key[2] or key[3]):  # a cursor past the recorded pages: the end
            return 200, json.dumps({"kind": "Listing", "data": {"children": [], "after": None, "before": None,
                                                                "dist": 0, "modhash": ""}}).encode(), None
        if key[0] == "info":
            things = self._index()
            found = [things[name] for name in sorted(key[1]) if name in things]
            return 200, json.dumps({"kind": "Listing", "data": {"children": found, "after": None,
                                                                "before": None}}).encode(), None
        return 404, json.dumps(ERROR_BODIES["404"]).encode(), None

    def _deleted_thread(self, post_id: str, status: int, body: bytes) -> tuple[int, bytes]:
        """The thread page of a post deleted by its author: the recorded page, or (thread not recorded) one
        made of the recorded post from a listing and no comments, with the post marked deleted."""
        if status == 200:
            return 200, _mark_post_deleted(body)
        post = self._index().get(f"t3_{post_id}")
        if post is None:
            return status, body
        empty = {"kind": "Listing", "data": {"children": [], "after": None, "before": None}}
        page = [{"kind": "Listing", "data": {"children": [post], "after": None, "before": None}}, empty]
        return 200, _mark_post_deleted(json.dumps(page).encode())

    def _index(self) -> dict[str, dict]:
        """Every recorded post and comment by fullname (for /api/info lookups with no exact recording)."""
        with self._lock:
            if self._things is None:
                things: dict[str, dict] = {}
                for rec in self.recordings.values():
                    if rec.status == 200 and rec.body.lstrip()[:1] in ("{", "["):
                        _collect(json.loads(rec.body), things)
                self._things = things
            return self._things


def _collect(node: Any, things: dict[str, dict]) -> None:
    """Walks a response for `t1`/`t3` objects; comments lose their nested replies, as /api/info sends them."""
    if isinstance(node, list):
        for item in node:
            _collect(item, things)
    elif isinstance(node, dict):
        if node.get("kind") in ("t1", "t3") and isinstance(node.get("data"), dict):
            data = node["data"]
            name = data.get("name") or f"{node['kind']}_{data.get('id')}"
            things.setdefault(name, {"kind": node["kind"], "data": {**data, "replies": ""}}
                              if node["kind"] == "t1" else node)
            _collect(data.get("replies"), things)
        else:
            for value in node.values():
                if isinstance(value, (dict, list)):
                    _collect(value, things)


def _cut_listing(rec: Recording, limit: str | None) -> bytes:
    """The recorded page, cut to a smaller `limit` than the recording asked for (reddit.com sends at most
    `limit` posts, and `after` then names the last one sent)."""
    try:
        asked, recorded = int(limit or 0), int(rec.params.get("limit") or 0)
    except ValueError:
        return rec.body.encode()
    if not 0 < asked < recorded:
        return rec.body.encode()
    page = json.loads(rec.body)
    children = page["data"]["children"][:asked]
    page["data"].update(children=children, after=children[-1]["data"]["name"] if children else None)
    return json.dumps(page).encode()


def _mark_post_deleted(body: bytes) -> bytes:
    """A thread page whose post was deleted by its author (what reddit.com then serves)."""
    page = json.loads(body)
    post = page[0]["data"]["children"][0]["data"] = dict(page[0]["data"]["children"][0]["data"])
    post.update(author="[deleted]", selftext="[deleted]", removed_by_category="deleted")
    return json.dumps(page).encode()


class _Handler(BaseHTTPRequestHandler):
    replay: RedditReplay
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else a keep-alive client's delayed ACK stalls each answer ~40 ms
    server_version = "RedditReplay/1.0"

    def _handle(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else None
        if split.path.rstrip("/") == "/api/v1/access_token":
            status, payload, headers = self.replay.token(self.headers.get("authorization"))
            fault = None
        else:
            params = _params(split.query, body, self.headers.get("content-type") or "")
            status, payload, headers, fault = self.replay.answer(method, split.path, params,
                                                                 self.headers.get("authorization"))
        if fault == "drop":
            self.close_connection = True  # no answer at all: the client sees the connection close
            return
        if fault == "truncated":
            payload = payload[: max(1, len(payload) // 2)]  # a complete HTTP answer with half the JSON
        try:
            self.send_response(status)
            headers.setdefault("content-type", "application/json; charset=UTF-8")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            if fault == "cut":
                self.wfile.write(payload[: len(payload) // 2])  # fewer bytes than content-length, then close
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: see RedditReplay.counters and .log


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Replay recorded reddit.com API responses on 127.0.0.1.")
    ap.add_argument("cassettes", nargs="+", help="cassette JSON files (praw's vcrpy format)")
    ap.add_argument("--port", type=int, default=8766)
    args = ap.parse_args(argv)
    replay = RedditReplay.from_files(args.cassettes, port=args.port).start()
    print(f"replaying {len(replay.recordings)} recorded responses at {replay.base_url} (Ctrl-C stops); "
          f"scrape it with REDDIT_OAUTH_URL={replay.base_url} REDDIT_URL={replay.base_url}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        replay.stop()


if __name__ == "__main__":
    main()
