"""A real HTTP server on 127.0.0.1 (port chosen by the OS) for download tests, in a background thread.

``FileServer(routes, mode)`` serves ``routes`` (URL path -> local file or bytes); any other path is a 404.
Modes, for every route:

- ``serve``: the bytes as they are;
- ``wrong_bytes``: the right length, first byte flipped (a checksum mismatch);
- ``drop_once``: the first request for a path gets the full Content-Length but only half the body and a
  closed connection; later requests are served normally;
- ``drop_always``: every request is cut off like that;
- ``stall``: headers and half the body, then nothing until the client gives up (a read timeout);
- ``busy_once``: the first request for a path is answered 503 Service Unavailable, later ones served.

``requests`` counts the requests per path. The server stops on leaving the ``with`` block, and stops
itself after ``lifetime_s`` seconds in any case, so a failing test can never leave it running.
"""

from __future__ import annotations

import collections
import http.server
import socket
import threading
from collections.abc import Mapping
from pathlib import Path

MODES = ("serve", "wrong_bytes", "drop_once", "drop_always", "stall", "busy_once")
STALL_S = 5.0  # longest a stalled response waits; client timeouts in tests are far shorter


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    timeout = 10  # a client that never sends its request cannot pin a thread

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.requests[path] += 1
            count = owner.requests[path]
        source = owner.routes.get(path)
        if source is None:
            self.send_error(404, "Not Found")
            return
        if owner.mode == "busy_once" and count == 1:
            self.send_error(503, "Service Unavailable")
            return
        body = source if isinstance(source, bytes) else Path(source).read_bytes()
        if owner.mode == "wrong_bytes":
            body = bytes([body[0] ^ 0xFF]) + body[1:]
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut_off = owner.mode == "drop_always" or (owner.mode == "drop_once" and count == 1)
        if owner.mode == "stall" or cut_off:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            if owner.mode == "stall":
                owner.stopped.wait(STALL_S)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    owner: FileServer


class FileServer:
    """Context manager running the test server; ``url(path)`` gives the address of a route."""

    def __init__(self, routes: Mapping[str, Path | bytes], mode: str = "serve", lifetime_s: float = 30.0):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        self.routes = dict(routes)
        self.mode = mode
        self.requests: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._deadline = threading.Timer(lifetime_s, self.stop)
        self._deadline.daemon = True

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def start(self) -> FileServer:
        self._thread.start()
        self._deadline.start()
        return self

    def stop(self) -> None:
        with self.lock:  # the deadline timer and the with block may both call stop
            if self.stopped.is_set():
                return
            self.stopped.set()  # releases stalled handlers
        self._deadline.cancel()
        if self._thread.is_alive():  # shutdown() waits for serve_forever, so only when it runs
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
