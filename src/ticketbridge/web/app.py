"""The Starlette app: the page, its one action (Retry), /metrics, /healthz and /readyz."""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from urllib.parse import parse_qs

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from .. import logs
from . import pages, security
from .metrics import registry_for
from .state import (
    RetryOutcome,
    StatusContext,
    flow_health,
    linked_items,
    open_failures,
    ping,
    sla_board,
    tracker_traffic,
)

log = structlog.get_logger("ticketbridge.status")

MAX_FORM_BYTES = 4096
# A page that carries a state-changing button must not be framed by another site (clickjacking),
# nor load anything from elsewhere; no script runs on it at all.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": with it, Chromium sends `Origin: null` on the page's own form posts, which
    # the CSRF check must refuse. Same-origin keeps the address (and a ?token=) from other sites.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def build_app(ctx: StatusContext, *, token: str | None = None, title: str = "ticketbridge status") -> Starlette:
    """`token`: what every request but the probes must carry (None: open, the loopback case)."""
    registry = registry_for(ctx)
    outcomes: OrderedDict[int, RetryOutcome] = OrderedDict()  # the last Retry results, for the notice

    def denied(request: Request) -> Response | None:
        if token is None or security.same(token, security.presented_token(request)):
            return None
        return PlainTextResponse("401: this status page needs its token (Authorization: Bearer, or open "
                                 "/?token=... once)", status_code=401, headers=HEADERS)

    def index(request: Request) -> Response:
        given = request.query_params.get("token")
        if token is not None and given is not None and security.same(token, given):
            # Trade the token in the address bar for a cookie, and drop it from the URL (and history).
            response: Response = RedirectResponse("/", status_code=303, headers=HEADERS)
            response.set_cookie(security.TOKEN_COOKIE, given, httponly=True, samesite="strict")
            return response
        refused = denied(request)
        if refused is not None:
            return refused
        csrf = request.cookies.get(security.CSRF_COOKIE) or security.new_csrf_token()
        retried = request.query_params.get("retried", "")
        note = pages.notice(int(retried), outcomes.get(int(retried))) if retried.isdigit() else ""
        hooks = dataclasses.asdict(ctx.webhooks) if ctx.webhooks is not None else None
        body = (note + pages.flows_section(flow_health(ctx))
                + pages.trackers_section(tracker_traffic(ctx), hooks)
                + pages.failures_section(open_failures(ctx), csrf, ctx.retry is not None)
                + pages.sla_section(sla_board(ctx))
                + pages.links_section(linked_items(ctx), ctx.store.count_links()))
        response = HTMLResponse(pages.page(title, body), headers=HEADERS)
        if request.cookies.get(security.CSRF_COOKIE) != csrf:
            response.set_cookie(security.CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return response

    async def retry(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        body = await request.body()
        form = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace")) if len(body) <= MAX_FORM_BYTES else {}
        if not security.csrf_ok(request, next(iter(form.get("csrf", [])), None)):
            log.warning("status.csrf_refused", path=request.url.path)
            return PlainTextResponse("403: the form's CSRF token or origin did not match; reload the page and "
                                     "try again", status_code=403, headers=HEADERS)
        failure_id = int(request.path_params["failure_id"])
        failure = await run_in_threadpool(ctx.store.failure, failure_id)
        if ctx.retry is None or failure is None:
            return PlainTextResponse(f"404: no failure #{failure_id} to retry", status_code=404, headers=HEADERS)
        if failure.state != "open":
            outcome = RetryOutcome(False, f"it is {failure.state}; only an open failure can be retried")
        else:
            outcome = await run_in_threadpool(ctx.retry, failure)
        outcome = RetryOutcome(outcome.resolved, logs.scrub_text(outcome.message))
        outcomes[failure_id] = outcome
        while len(outcomes) > 100:
            outcomes.popitem(last=False)
        log.info("status.retry", failure=failure_id, resolved=outcome.resolved)
        return RedirectResponse(f"/?retried={failure_id}#failures", status_code=303, headers=HEADERS)

    def metrics(request: Request) -> Response:
        refused = denied(request)
        if refused is not None:
            return refused
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST,
                        headers={"Cache-Control": "no-store"})

    def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    def readyz(request: Request) -> Response:
        try:
            ping(ctx.store)
        except Exception as error:  # any failure to read the store means "not ready"
            log.warning("status.not_ready", error=type(error).__name__)
            return PlainTextResponse(f"store unreachable ({type(error).__name__})", status_code=503)
        return PlainTextResponse("ready")

    return Starlette(routes=[
        Route("/", index, methods=["GET"]),
        Route("/failures/{failure_id:int}/retry", retry, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ])
