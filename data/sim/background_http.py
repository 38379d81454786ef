"""The lifecycle both local Reddit servers share (the simulator's and the tests' replay of real recordings):
a `ThreadingHTTPServer` on a daemon thread, stopped cleanly, usable as a context manager."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

Server = TypeVar("Server", bound="BackgroundHTTPServer")


class BackgroundHTTPServer:
    """Subclasses build their request handler and call `_serve`; `start()` returns self."""

    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self: Server) -> Server:
        raise NotImplementedError

    def _serve(self: Server, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], thread_name: str
               ) -> Server:
        self._httpd = ThreadingHTTPServer(address, handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self: Server) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running: call start() or use it as a context manager")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"
