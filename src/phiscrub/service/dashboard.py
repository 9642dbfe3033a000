"""GET /: the operator's page. Self-contained (inline CSS and SVG, no script, no fetch:
a Content-Security-Policy of default-src 'none' is sent with it), rendered on the server
from PHI-free data only: counts, channels, statuses, reason categories, typed reasons,
keyed hashes. Release and reject are plain form posts carrying a CSRF value.
"""

from __future__ import annotations

import time
from html import escape

from phiscrub import __version__
from phiscrub.service.core import Service
from phiscrub.service.jobs import operation

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
COLORS = {"done": "#2e9d5b", "dropped": "#8aa0b4", "quarantined": "#e0a100", "failed": "#d64545",
          "excluded": "#bbbbbb", "running": "#4a7fd4", "pending": "#4a7fd4"}
_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f6f8;color:#1d2630}
header{background:#1d2630;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
main{padding:16px 24px;max-width:1200px}section{background:#fff;border-radius:6px;padding:12px 16px;margin:0 0 16px;
box-shadow:0 1px 2px #0002}h2{font-size:16px;margin:4px 0 10px}.tiles{display:flex;gap:12px;flex-wrap:wrap}
.tile{background:#fff;border-radius:6px;padding:10px 16px;min-width:110px;box-shadow:0 1px 2px #0002}
.tile b{display:block;font-size:26px}table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:4px 8px;
border-bottom:1px solid #e3e7eb;font-size:13px}code{font-size:12px}form{display:inline}button{margin-right:4px;
cursor:pointer}.bar{background:#e3e7eb;height:10px;border-radius:5px;overflow:hidden;width:160px}
.bar i{display:block;height:10px;background:#2e9d5b}.muted{color:#6b7785}
"""


def _tile(label: str, value: object, color: str = "#1d2630") -> str:
    return f'<div class="tile"><b style="color:{color}">{escape(str(value))}</b>{escape(label)}</div>'


def _channel_chart(rows: list[tuple[str, str, int]]) -> str:
    """Stacked horizontal bars: items per channel, by status."""
    by: dict[str, dict[str, int]] = {}
    for ch, st, n in rows:
        by.setdefault(ch, {})[st] = n
    if not by:
        return '<p class="muted">no items yet</p>'
    most = max(sum(v.values()) for v in by.values()) or 1
    h = 28 * len(by) + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="620" height="{h}" role="img" aria-label="items by channel">']
    for i, (ch, counts) in enumerate(sorted(by.items())):
        y, x = 6 + i * 28, 90.0
        parts.append(f'<text x="0" y="{y + 15}" font-size="12">{escape(ch)}</text>')
        for st in sorted(counts):
            w = 500 * counts[st] / most
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="20" fill="{COLORS.get(st, "#777")}">'
                         f'<title>{escape(st)}: {counts[st]}</title></rect>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" font-size="12">{sum(counts.values())}</text>')
    legend_y = h - 4
    lx = 90
    for st, col in COLORS.items():
        if any(st in c for c in by.values()):
            parts.append(f'<rect x="{lx}" y="{legend_y - 10}" width="10" height="10" fill="{col}"/>'
                         f'<text x="{lx + 14}" y="{legend_y}" font-size="11">{escape(st)}</text>')
            lx += 24 + 7 * len(st)
    parts.append("</svg>")
    return "".join(parts)


_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, float("inf"))


def _latency_chart(samples: list[tuple[str, float]]) -> str:
    if not samples:
        return '<p class="muted">no items yet</p>'
    counts = [0] * len(_BUCKETS)
    for _, s in samples:
        counts[next(i for i, b in enumerate(_BUCKETS) if s <= b)] += 1
    most = max(counts) or 1
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" width="620" height="170" role="img" aria-label="latency">']
    for i, (b, n) in enumerate(zip(_BUCKETS, counts, strict=True)):
        x, bh = 10 + i * 60, 120 * n / most
        label = f"≤{b:g}s" if b != float("inf") else ">30s"
        parts.append(f'<rect x="{x}" y="{130 - bh:.1f}" width="48" height="{max(bh, 1):.1f}" fill="#4a7fd4">'
                     f"<title>{escape(label)}: {n}</title></rect>")
        parts.append(f'<text x="{x}" y="146" font-size="11">{escape(label)}</text>'
                     f'<text x="{x}" y="{max(124 - bh, 12):.1f}" font-size="11">{n}</text>')
    parts.append(f'<text x="10" y="164" font-size="11" fill="#6b7785">last {len(samples)} items, seconds each</text></svg>')
    return "".join(parts)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + "Z" if t else ""


def _jobs(svc: Service) -> str:
    rows = svc.store.jobs(20)
    if not rows:
        return '<p class="muted">no jobs yet (POST /v1/jobs)</p>'
    out = ["<table><tr><th>job</th><th>policy</th><th>state</th><th>success</th><th>failure</th><th>pending</th>"
           "<th>progress</th><th>started</th></tr>"]
    for r in rows:
        c = operation(r)["metadata"]["counter"]
        total = max(r["total"], 1)
        pct = 100 * (r["success"] + r["failure"]) / total if r["total"] else (100 if r["status"] != "running" else 0)
        out.append(f"<tr><td><code>{escape(r['id'][:12])}</code></td><td>{escape(r['policy'])}</td>"
                   f"<td>{escape(r['status'])}</td><td>{c['success']}</td><td>{c['failure']}</td><td>{c['pending']}</td>"
                   f'<td><div class="bar"><i style="width:{pct:.0f}%"></i></div></td><td>{_when(r["created"])}</td></tr>')
    out.append("</table>")
    return "".join(out)


def _queue(svc: Service, csrf: str) -> str:
    rows = svc.store.review_items("pending")
    if not rows:
        return '<p class="muted">nothing waits for review</p>'
    out = ["<table><tr><th>item (keyed hash)</th><th>from</th><th>kind</th><th>category</th><th>reason</th>"
           "<th>size</th><th>since</th><th>decision</th></tr>"]
    for r in rows:
        rid = escape(r["id"])
        forms = "".join(
            f'<form method="post" action="/v1/review/{rid}/{what}"><input type="hidden" name="csrf" value="{escape(csrf)}">'
            f"<button>{what}</button></form>" for what in ("release", "reject"))
        out.append(f"<tr><td><code>{rid}</code></td><td>{escape(r['channel'])}</td><td>{escape(r['kind'])}</td>"
                   f"<td>{escape(r['category'])}</td><td>{escape(r['reason'])}</td><td>{r['size']}</td>"
                   f"<td>{_when(r['created'])}</td><td>{forms}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _decided(svc: Service) -> str:
    rows = [r for r in svc.store.review_items(None, 50) if r["status"] in ("released", "rejected")][:15]
    if not rows:
        return ""
    out = ["<h2>Decided</h2><table><tr><th>item</th><th>decision</th><th>reviewer</th><th>when</th></tr>"]
    for r in rows:
        out.append(f"<tr><td><code>{escape(r['id'])}</code></td><td>{escape(r['status'])}</td>"
                   f"<td><code>{escape(r['reviewer'])}</code></td><td>{_when(r['decided'])}</td></tr>")
    out.append("</table>")
    return "".join(out)


def render(svc: Service, csrf: str) -> str:
    act = svc.store.activity_counts()
    totals: dict[str, int] = {}
    for _, st, n in act:
        totals[st] = totals.get(st, 0) + n
    pending = svc.store.pending_reviews()
    running = sum(1 for j in svc.store.jobs(200) if j["status"] == "running")
    tiles = "".join(_tile(st, totals.get(st, 0), COLORS[st]) for st in ("done", "quarantined", "failed", "dropped"))
    tiles += _tile("awaiting review", pending, "#e0a100") + _tile("jobs running", running, "#4a7fd4")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>phiscrub service</title><style>{_STYLE}</style></head>
<body><header><h1>phiscrub service</h1><span class="muted">version {escape(__version__)} · policies:
{escape(", ".join(svc.policies.names()))}</span></header><main>
<div class="tiles">{tiles}</div>
<section><h2>Items by channel and status</h2>{_channel_chart(act)}</section>
<section><h2>Latency</h2>{_latency_chart(svc.store.recent_seconds())}</section>
<section><h2>Jobs</h2>{_jobs(svc)}</section>
<section><h2>Review queue</h2>{_queue(svc, csrf)}{_decided(svc)}</section>
<form method="post" action="/logout"><button>sign out</button></form>
</main></body></html>
"""


def login_page(message: str = "") -> str:
    note = f'<p style="color:#d64545">{escape(message)}</p>' if message else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>phiscrub service: sign in</title><style>{_STYLE}</style></head>
<body><header><h1>phiscrub service</h1></header><main><section><h2>Sign in</h2>{note}
<p>A bearer token is required. API clients send <code>Authorization: Bearer TOKEN</code>.</p>
<form method="post" action="/login"><input type="password" name="token" autocomplete="off" size="48">
<button>sign in</button></form></section></main></body></html>
"""
