"""Serving a site from ``to_web`` on 127.0.0.1, cross-origin isolated, so WebAssembly can use threads.

Browsers give a page ``SharedArrayBuffer`` (and so onnxruntime-web its multi-threaded
WebAssembly) only when it is cross-origin isolated: served with ``Cross-Origin-Opener-Policy:
same-origin`` and ``Cross-Origin-Embedder-Policy: require-corp``. A plain static server sends
neither, and the page runs on one thread. This server sends both.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path
from typing import Any

from onnxbridge.core._errors import InputError

ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class _IsolatedHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {  # noqa: RUF012 - the base class's own attribute, extended
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".mjs": "text/javascript",
        ".js": "text/javascript",
        ".wasm": "application/wasm",
        ".onnx": "application/octet-stream",
    }

    def end_headers(self) -> None:
        for name, value in ISOLATION_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class WebServer:
    """A site served on ``127.0.0.1`` with the headers that make it cross-origin isolated.

    Use it as a context manager, or call :meth:`close`. ``url`` is the page's address.
    """

    def __init__(self, directory: str | os.PathLike[str], port: int = 0) -> None:
        folder = Path(directory)
        if not (folder / "index.html").is_file() or not (folder / "manifest.json").is_file():
            raise InputError(
                f"{str(folder)!r} is not a site written by to_web() (no index.html and manifest.json). "
                "Write one with art.to_web(folder) or `onnxbridge web MODEL -o FOLDER` first."
            )
        handler = functools.partial(_IsolatedHandler, directory=str(folder))
        try:
            self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        except OSError as err:
            raise InputError(f"Cannot serve on 127.0.0.1:{port} ({err.strerror}); choose another --port.") from err
        self.directory = folder
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/index.html"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> WebServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"WebServer({self.url!r}, directory={str(self.directory)!r})"


def serve_web(directory: str | os.PathLike[str], *, port: int = 0) -> WebServer:
    """Serve a site written by ``Artifact.to_web`` on 127.0.0.1, cross-origin isolated.

    The page then runs onnxruntime-web's WebAssembly backend on several threads and says how
    many it got. The server runs in a background thread until ``close()`` (or the end of a
    ``with`` block, or the process).

    Args:
        directory: The site folder.
        port: The port (``0``: any free one).

    Returns:
        A :class:`WebServer`; open ``server.url``.

    Raises:
        InputError: The folder is not a site, or the port is taken.
    """
    return WebServer(directory, port)
