"""The web UI: server-rendered pages (Jinja2) with a little hand-written JavaScript, and the
read endpoint its chat page needs beside the API (a document's text with a cited span; the
evaluation runs are in `ragline.server.evaluation`).

The pages themselves hold no data and are served without a key; the browser keeps the key the
user pasted on `/ui/login` in `sessionStorage` and every data call (`fetch`) sends it as
`Authorization: Bearer KEY`, so the API's one auth path (`caller`) guards the data and no
cookie is ever sent on the browser's own initiative (no CSRF surface). Each page answers with a
Content-Security-Policy that allows scripts from `/ui/static/` only: no inline script, no
`eval`, and the scripts put data on the page with `textContent`, never as HTML.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Annotated, Any

import anyio.to_thread
import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.routing import Match

from ragline.server.auth import Caller, caller, state_of
from ragline.server.errors import ApiError

router = APIRouter()
Authorized = Annotated[Caller, Depends(caller)]
_HERE = Path(__file__).parent
MAX_SOURCE_CHARS = 100_000  # a longer document is sent as this many characters around the span

_templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.PackageLoader("ragline.server", "templates"),
    autoescape=True,  # every value, in every template
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
))
router.mount("/ui/static", StaticFiles(directory=_HERE / "static"), name="ui-static")

# (label, path): the pages in the navigation bar. A page whose route is not in the app is left
# out of the bar.
NAV = (("Chat", "/ui/chat"), ("Documents", "/ui/documents"), ("Evaluation", "/ui/evaluation"),
       ("Traces", "/ui/traces"))

_CSP = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "form-action": "'self'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
}
# The evaluation report is one self-contained file with inline CSS and SVG and no scripts; it is
# shown in a sandboxed <iframe srcdoc>, which takes this page's policy, so this page allows
# inline styles (never inline scripts).
_REPORT_CSP = {**_CSP, "style-src": "'self' 'unsafe-inline'", "frame-src": "'self'"}


def content_security_policy(directives: dict[str, str]) -> str:
    return "; ".join(f"{name} {value}".strip() for name, value in directives.items())


def _security_headers(csp: dict[str, str]) -> dict[str, str]:
    return {"Content-Security-Policy": content_security_policy(csp),
            "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY", "Cache-Control": "no-store"}


def _page(request: Request, template: str, title: str, *,
          csp: dict[str, str] = _CSP) -> HTMLResponse:
    nav = [(label, path) for label, path in NAV if _served(request, path)]
    response = _templates.TemplateResponse(request, template, {
        "title": title, "nav": nav, "current": request.url.path,
        "asset_version": version("ragline")})
    response.headers.update(_security_headers(csp))
    return response


def _served(request: Request, path: str) -> bool:
    """Whether the app has a GET route for `path`."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "app": request.app}
    return any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes)


# ---------------------------------------------------------------- pages


@router.get("/ui", include_in_schema=False)
async def ui_home() -> RedirectResponse:
    return RedirectResponse("/ui/chat", status_code=307)


@router.get("/ui/login", include_in_schema=False)
async def ui_login(request: Request) -> HTMLResponse:
    return _page(request, "login.html", "Sign in")


@router.get("/ui/chat", include_in_schema=False)
async def ui_chat(request: Request) -> HTMLResponse:
    return _page(request, "chat.html", "Chat")


@router.get("/ui/documents", include_in_schema=False)
async def ui_documents(request: Request) -> HTMLResponse:
    return _page(request, "documents.html", "Documents")


@router.get("/ui/evaluation", include_in_schema=False)
async def ui_evaluation(request: Request) -> HTMLResponse:
    return _page(request, "evaluation.html", "Evaluation", csp=_REPORT_CSP)


@router.get("/ui/traces", include_in_schema=False)
async def ui_traces(request: Request) -> HTMLResponse:
    return _page(request, "traces.html", "Traces")


# ---------------------------------------------------------------- the data the pages read


@router.get("/collections/{name}/source")
async def document_source(
    name: str, request: Request, who: Authorized,
    doc_id: Annotated[str, Query(min_length=1, description="the cited document's id")],
    start: Annotated[int | None, Query(ge=0, description="the cited span's first character")]
    = None,
    end: Annotated[int | None, Query(ge=0, description="one past its last character")] = None,
) -> dict[str, Any]:
    """A document's text (or `MAX_SOURCE_CHARS` of it around the span) with the span's offsets
    into the document: `text` is `document[text_start:text_end]`."""
    who.require(name)
    state = state_of(request)

    def read() -> dict[str, Any]:
        with state.catalog.opened(name) as index:
            document = index.store.get_document(doc_id)
        if document is None:
            raise ApiError(404, "document_not_found", f"collection {name!r} has no document "
                           f"{doc_id!r} in its index")
        return source_window(document.text, start, end, doc_id=doc_id, title=document.title)

    return await anyio.to_thread.run_sync(read)


def source_window(text: str, start: int | None, end: int | None, *, doc_id: str,
                  title: str) -> dict[str, Any]:
    """The part of `text` a viewer shows for the span [start, end) (422 when it is not one)."""
    length = len(text)
    if start is None or end is None:
        start = end = 0
    if not 0 <= start <= end <= length:
        raise ApiError(422, "invalid_span", f"the span [{start}, {end}) is not inside "
                       f"document {doc_id!r} ({length} characters)")
    lo, hi = 0, length
    if length > MAX_SOURCE_CHARS:
        spare = max(0, MAX_SOURCE_CHARS - (end - start)) // 2
        lo = max(0, start - spare)
        hi = min(length, max(end, lo + MAX_SOURCE_CHARS))
    return {"doc_id": doc_id, "title": title, "length": length, "start": start, "end": end,
            "text_start": lo, "text_end": hi, "text": text[lo:hi]}


def static_files() -> list[str]:
    """The UI's committed assets (tests read them)."""
    return sorted(p.name for p in (_HERE / "static").iterdir() if p.is_file())
