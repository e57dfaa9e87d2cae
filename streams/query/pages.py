"""The operator's pages (``/ui``): static HTML, JavaScript modules and CSS from the package.

Three pages read the same JSON API as any client, with the bearer token kept in the
browser's localStorage: the fleet overview (``/ui``), one device (``/ui/devices/{id}``) and
the alerts (``/ui/alerts``). No build step: the files in ``streams/query/ui/`` are served as
they are, read once when the worker starts.

Everything the API returns is put into the pages as text (``textContent``, DOM and SVG
APIs), never parsed as HTML: the token sits in localStorage, so injected markup would be a
stolen token. As a second line, every response carries a Content-Security-Policy that allows
scripts, styles and fetches from the worker's own origin only: no inline script or style,
no other host, no framing, no form posting anywhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from importlib.resources.abc import Traversable

from aiohttp import web

__all__ = ["CSP", "mount_pages", "ui_files"]

_TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
}

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "img-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)

_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def ui_files() -> Traversable:
    """The folder of the pages' files, ``streams/query/ui/`` (package data)."""
    return resources.files("streams.query") / "ui"


def _files() -> dict[str, tuple[bytes, str]]:
    """Every servable file of the folder: name -> (body, content type)."""
    found = {}
    for entry in ui_files().iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in _TYPES:
            found[entry.name] = (entry.read_bytes(), _TYPES[suffix])
    return found


def mount_pages(app: web.Application) -> None:
    """Adds the pages and their static files to ``app`` (the worker's root application)."""
    files = _files()

    def serve(name: str) -> web.Response:
        body, content_type = files[name]
        return web.Response(body=body, content_type=content_type, headers=_HEADERS)

    def page(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(_: web.Request) -> web.Response:
            return serve(name)

        return handler

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files or name.endswith(".html"):
            raise web.HTTPNotFound(text="no such file", headers=_HEADERS)
        return serve(name)

    app.router.add_get("/ui", page("overview.html"))
    app.router.add_get("/ui/devices/{device_id}", page("device.html"))
    app.router.add_get("/ui/alerts", page("alerts.html"))
    app.router.add_get("/ui/static/{name}", static)
