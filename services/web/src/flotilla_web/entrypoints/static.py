"""/static/<name>: the files of the `static` folder (one level, no sub-folders), read
once when the app is built, served from memory with `Cache-Control: max-age` and an ETag
(a reload asks `If-None-Match` and gets a 304)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from flotilla_web.domain import NotFound

__all__ = ["STATIC", "StaticFile", "load_static", "router"]

STATIC = Path(__file__).resolve().parent.parent / "static"
_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

router = APIRouter()


@dataclass(frozen=True, slots=True)
class StaticFile:
    content: bytes
    media_type: str
    etag: str


def load_static(directory: Path = STATIC) -> dict[str, StaticFile]:
    files: dict[str, StaticFile] = {}
    for path in sorted(directory.iterdir()):
        media_type = _TYPES.get(path.suffix)
        if path.is_file() and media_type is not None:
            content = path.read_bytes()
            etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
            files[path.name] = StaticFile(content, media_type, etag)
    return files


@router.get("/static/{name}", include_in_schema=False)
async def static_file(name: str, request: Request) -> Response:
    files: dict[str, StaticFile] = request.app.state.static_files
    found = files.get(name)
    if found is None:
        raise NotFound
    max_age: int = request.app.state.wiring.settings.static_max_age_s
    headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": found.etag}
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return Response(found.content, media_type=found.media_type, headers=headers)
