"""The status page as plain server-rendered HTML: no script, every value escaped (`_e`)."""

from __future__ import annotations

from datetime import datetime
from html import escape

from .state import FailureView, FlowHealth, LinkView, RetryOutcome, SlaClockView, TrackerTraffic

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.ok{color:#17692a}.warning,.stale,.failures{color:#9a6700}.breached,.never,.bad{color:#b3261e;font-weight:600}
.notice{padding:.5rem 1rem;border:1px solid #ccc;background:#f8f8f8}
.msg{white-space:pre-wrap;font-family:monospace;font-size:.85rem}
button{cursor:pointer}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def duration(seconds: float | None) -> str:
    """12s, 4m05s, 3h07m, 2d04h; negative for a deadline already past."""
    if seconds is None:
        return "—"
    sign, rest = ("-" if seconds < 0 else ""), int(abs(seconds))
    if rest < 60:
        return f"{sign}{rest}s"
    if rest < 3600:
        return f"{sign}{rest // 60}m{rest % 60:02d}s"
    if rest < 86400:
        return f"{sign}{rest // 3600}h{rest % 3600 // 60:02d}m"
    return f"{sign}{rest // 86400}d{rest % 86400 // 3600:02d}h"


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _link(url: str | None, text: str) -> str:
    return f'<a href="{_e(url)}" target="_blank" rel="noopener noreferrer">{_e(text)}</a>' if url else _e(text)


def _table(headers: list[str], rows: list[str], empty: str) -> str:
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def flows_section(flows: list[FlowHealth]) -> str:
    rows = []
    for flow in flows:
        for n, side in enumerate(flow.sides):
            name = f'<td rowspan="2">{_e(flow.name)}<br><span class="{_e(flow.state.split()[0])}">' \
                   f'{_e(flow.state)}</span></td>' if n == 0 else ""
            counts = f'<td rowspan="2">{flow.linked}</td><td rowspan="2">{flow.open_failures}</td>' if n == 0 else ""
            rows.append(f"<tr>{name}<td>{_e(side.tracker)}</td><td>{_when(side.last_poll)} "
                        f"({duration(side.poll_age)} ago)</td><td>{duration(side.cursor_lag)}</td>"
                        f"<td>{duration(side.interval)}</td><td class=\"{_e(side.state)}\">{_e(side.state)}</td>"
                        f"{counts}</tr>")
    return "<h2 id=\"flows\">Flows</h2>" + _table(
        ["flow", "tracker", "last poll", "cursor lag", "poll interval", "health", "linked", "open failures"],
        rows, "No flows configured.")


def trackers_section(traffic: list[TrackerTraffic], webhooks: dict[str, int] | None) -> str:
    rows = []
    for t in traffic:
        requests = ", ".join(f"{'no response' if s == 0 else s}: {n}" for s, n in t.requests.items()) or "none yet"
        headroom = "—" if t.headroom is None else f"{t.headroom:.0%} ({t.remaining:,.0f} of {t.limit:,.0f} left)"
        css = "" if t.headroom is None else "ok" if t.headroom > 0.2 else "bad"
        rows.append(f"<tr><td>{_e(t.name)}</td><td>{_e(t.type)}</td><td>{_e(requests)}</td>"
                    f"<td class=\"{css}\">{_e(headroom)}</td><td>{t.rate_limit_waits}</td></tr>")
    html = "<h2 id=\"trackers\">Trackers (this process)</h2>" + _table(
        ["tracker", "type", "HTTP responses by status", "rate-limit headroom", "rate-limit waits"], rows,
        "No trackers configured.")
    if webhooks is None:
        return html + "<p>Webhooks: not configured (polling only).</p>"
    parts = ", ".join(f"{_e(k.replace('_', ' '))} {v}" for k, v in webhooks.items())
    return html + f"<p id=\"webhooks\">Webhook deliveries: {parts}.</p>"


def failures_section(failures: list[FailureView], csrf: str, can_retry: bool) -> str:
    rows = []
    for view in failures:
        f = view.failure
        button = (f'<form method="post" action="/failures/{f.id}/retry">'
                  f'<input type="hidden" name="csrf" value="{_e(csrf)}">'
                  f'<button type="submit" id="retry-{f.id}">Retry</button></form>') if can_retry else "—"
        rows.append(f"<tr id=\"failure-{f.id}\"><td>#{f.id}</td><td>{_e(f.flow)}</td>"
                    f"<td>{_link(view.url, f'{f.tracker} {f.item_key}')}</td><td>{_e(f.kind)}/{_e(f.reason)}</td>"
                    f"<td class=\"msg\">{_e(view.message)}</td><td>{f.attempts}</td>"
                    f"<td>{_when(f.created_at)}</td><td>{button}</td></tr>")
    return "<h2 id=\"failures\">Failures</h2>" + _table(
        ["id", "flow", "item", "kind", "tracker's message", "attempts", "since", ""], rows, "No open failures.")


def sla_section(clocks: list[SlaClockView]) -> str:
    rows = [f"<tr><td>{_link(c.url, f'{c.tracker} {c.item_key}')}</td><td>{_e(c.severity)}</td>"
            f"<td>{_e(c.metric)}</td><td>{_e(c.status)}</td><td>{_when(c.due_at)}</td>"
            f"<td>{duration(c.seconds_to_breach)}</td><td class=\"{_e(c.state)}\">{_e(c.state)}</td></tr>"
            for c in clocks]
    return "<h2 id=\"sla\">SLA board</h2>" + _table(
        ["ticket", "severity", "metric", "clock", "due", "time to breach", "state"], rows,
        "No running SLA clocks.")


def links_section(links: list[LinkView], total: int) -> str:
    rows = [f"<tr><td>{_e(v.link.flow)}</td><td>{_link(v.left_url, f'{v.left_tracker} {v.link.left_key}')}</td>"
            f"<td>{_link(v.right_url, f'{v.right_tracker} {v.link.right_key}')}</td>"
            f"<td>{_e(v.link.role)}</td></tr>" for v in links]
    shown = f" (newest {len(links)} of {total})" if total > len(links) else ""
    return f"<h2 id=\"links\">Linked items{shown}</h2>" + _table(
        ["flow", "left", "right", "role"], rows, "Nothing linked yet.")


def notice(failure_id: int, outcome: RetryOutcome | None) -> str:
    if outcome is None:
        return ""
    if outcome.resolved:
        text, css = f"Retry of failure #{failure_id} succeeded: {outcome.message}", "ok"
    else:
        text, css = f"Retry of failure #{failure_id} did not succeed: {outcome.message}", "bad"
    return f'<p class="notice {css}" id="notice">{_e(text)}</p>'


def page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style>'
            f"</head><body><h1>{_e(title)}</h1>{body}</body></html>")
