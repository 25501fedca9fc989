"""A small HTTP server on 127.0.0.1 that stands in for the Omniglot repository in tests.

URLs are ``/<mode>/<any path>/<file name>``; the file is looked up by its name. Modes:

- ``good``: the file as it is, honouring ``Range: bytes=N-`` with 206 Partial Content.
- ``corrupt``: the file with one byte flipped in the middle.
- ``truncated``: the first half of the file, announced with its (shorter) true length.
- ``flaky``: the first request for a file announces the full length, sends half and drops the connection;
  later requests are served as in ``good``.
- ``dropping``: every request sends half and drops the connection.
- ``norange``: ignores Range and always sends the whole file with 200.

Every request is logged as ``(path, Range header or None)`` for the tests to inspect.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OmniglotTestServer:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.log: list[tuple[str, str | None]] = []
        self._dropped: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 (name fixed by http.server)
                server.log.append((self.path, self.headers.get("Range")))
                parts = self.path.strip("/").split("/")
                mode, name = parts[0], parts[-1]
                data = server.files.get(name)
                if data is None or len(parts) < 2:
                    self.send_error(404)
                    return
                if mode == "corrupt":
                    mid = len(data) // 2
                    data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
                elif mode == "truncated":
                    data = data[: len(data) // 2]
                if mode == "dropping" or (mode == "flaky" and name not in server._dropped):
                    server._dropped.add(name)
                    self._send(200, data, drop_after=len(data) // 2)
                    return
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and mode != "norange":
                    start = int(match.group(1))
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self._send(206, data[start:], content_range=f"bytes {start}-{len(data) - 1}/{len(data)}")
                    return
                self._send(200, data)

            def _send(self, status, body, content_range=None, drop_after=None):
                self.send_response(status)
                self.send_header("Content-Type", "application/zip")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                if content_range:
                    self.send_header("Content-Range", content_range)
                self.end_headers()
                if drop_after is None:
                    self.wfile.write(body)
                else:
                    self.wfile.write(body[:drop_after])
                    self.wfile.flush()
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def base(self, mode: str) -> str:
        return f"{self.url}/{mode}"

    def __enter__(self) -> OmniglotTestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
