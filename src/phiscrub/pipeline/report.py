"""`phiscrub report`: one self-contained HTML page about a job, for a compliance reviewer.

Why self-contained: the page is mailed, archived and opened on machines without network
access, and a page that fetches nothing cannot leak what it shows through a request. So
CSS is inline, charts are inline SVG, images are data: URIs, and a Content-Security-Policy
forbids every other source. What it shows comes from the audit log (PHI-free by
construction) and from the de-identified outputs; never a 'before' image, a source path
or a value: the quarantine list names items by their keyed hash.

Outputs are read through a tree (trees.py): a folder, or a gs:// / s3:// prefix read from
the bucket itself; the audit log is in the job's state folder (DST/.phiscrub, or the
``--state`` folder a bucket destination needs).
"""

from __future__ import annotations

import base64
import html
import io
from collections import Counter, defaultdict
from pathlib import Path

from phiscrub.pipeline.audit import check_log, read_records
from phiscrub.pipeline.phi_categories import pixel_fate
from phiscrub.pipeline.trees import LocalTree, Tree

STATE = ".phiscrub"
THUMB = 240  # longest side of a thumbnail, in CSS pixels
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#1d2733;background:#f6f8fa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
.sub{color:#57606a}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 18px;min-width:120px}
.card b{display:block;font-size:26px}.done b{color:#1a7f37}.quarantined b{color:#bf8700}.failed b{color:#cf222e}
.dropped b{color:#57606a}table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de}
th,td{padding:5px 10px;border-bottom:1px solid #eaeef2;text-align:left}th{background:#f0f3f6}
td.n{text-align:right;font-variant-numeric:tabular-nums}.thumbs{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px}
figcaption{font-size:12px;color:#57606a;max-width:240px;word-break:break-all}code{font-size:12px}
.ok{color:#1a7f37}.bad{color:#cf222e}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def _final_items(records: list[dict]) -> dict[str, dict]:
    last: dict[str, dict] = {}
    for r in records:
        if r.get("event") == "item" and r.get("item"):
            last[r["item"]] = r
    return last


def build_report(dst: Path | Tree, *, state: Path | None = None, max_thumbnails: int = 24) -> str:
    """``dst``: the output folder, or a tree (a bucket prefix); ``state``: the job's state
    folder (default DST/.phiscrub, for a folder)."""
    if isinstance(dst, Path):
        state = state if state is not None else dst / STATE
        dst = LocalTree(dst)
    if state is None:
        raise ValueError("a destination that is not a folder needs its state folder")
    log = state / "audit.jsonl"
    records = read_records(log)
    items = _final_items(records)
    chain = check_log(log)
    totals = Counter(r.get("status", "") for r in items.values())
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">",
        "<meta name=viewport content=\"width=device-width,initial-scale=1\">",
        f"<title>phiscrub job report</title><style>{_CSS}</style></head><body>",
        "<h1>phiscrub de-identification report</h1>",
        f"<div class=sub>{_e(_versions(records))} &middot; audit chain: "
        + (f"<span class=ok>intact ({chain.records} records)</span>" if chain.ok
           else f"<span class=bad>BROKEN at seq {_e(chain.first_bad)}</span>") + "</div>",
        "<h2>Totals</h2><div class=cards>",
    ]
    for k in ("done", "quarantined", "failed", "dropped", "duplicate"):  # duplicate: an identical copy, no output of its own
        parts.append(f"<div class='card {k}'><b>{totals.get(k, 0)}</b>{k}</div>")
    parts.append("</div>")
    parts += _pixel_cards(items)
    parts += _throughput(records)
    phi = Counter()
    for r in items.values():
        for cat, n in (r.get("phi") or {}).items():
            phi[cat] += int(n)
    parts.append("<h2>PHI found, by category</h2>")
    parts.append(_bar_chart(phi) if phi else "<p class=sub>nothing recorded</p>")
    parts += _modality_table(dst, items)
    parts += _slide_table(items)
    parts += _thumbnails(dst, items, max_thumbnails)
    parts += _quarantine(items)
    parts.append("<p class=sub>Items are named by keyed hashes of their source URIs; outputs by their pseudonymous"
                 " paths. This page holds no identifying value and fetches nothing.</p></body></html>")
    return "\n".join(parts)


def _pixel_cards(items: dict) -> list[str]:
    """How many released images the burned-in text stage scanned, how many 'auto' screened
    and found clear, and how many it left alone: a reader must see at a glance whether
    pixels were looked at at all."""
    fates = Counter(pixel_fate(r.get("manifest")) for r in items.values() if r.get("status") == "done")
    scanned, screened, alone = fates.get("scanned", 0), fates.get("screened", 0), fates.get("left alone", 0)
    if not scanned and not screened and not alone:
        return ["<h2>Burned-in text</h2><p class=sub>no image was judged: clean_pixel_data was off, or no output has"
                " pixel data</p>"]
    return ["<h2>Burned-in text</h2><div class=cards>",
            f"<div class=card><b>{scanned}</b>images scanned for text</div>",
            f"<div class=card><b>{screened}</b>screened and found clear (no sign of text in the header, none seen by a"
            " quick look at the pixels)</div>",
            f"<div class=card><b>{alone}</b>left alone (not scanned: no sign of burned-in text in the header)</div></div>"]


def _versions(records: list[dict]) -> str:
    starts = [r for r in records if r.get("event") == "run-start"]
    if not starts:
        return "no run recorded"
    s = starts[-1]
    return (f"{len(starts)} run(s); last: phiscrub {s.get('version', '?')}, profile {s.get('profile', '?')},"
            f" policy {str(s.get('policy', ''))[:12]}")


def _throughput(records: list[dict]) -> list[str]:
    rows = []
    run, n_bytes = 0, 0
    for r in records:
        if r.get("event") == "run-start":
            run, n_bytes = run + 1, 0
        elif r.get("event") == "item":
            n_bytes += int(r.get("size") or 0)
        elif r.get("event") == "run-end":
            n = sum(int(r.get(k) or 0) for k in ("done", "dropped", "failed", "quarantined", "duplicates"))
            secs = float(r.get("seconds") or 0)
            rows.append((run, n, int(r.get("skipped") or 0), secs, n_bytes))
    out = ["<h2>Throughput</h2>"]
    if not rows:
        return out + ["<p class=sub>no finished run</p>"]
    out.append("<table><tr><th>run</th><th>items</th><th>skipped (resumed)</th><th>seconds</th><th>items/s</th><th>MB/s</th></tr>")
    for run, n, skipped, secs, b in rows:
        ips = f"{n / secs:.1f}" if secs > 0 else "-"
        mbs = f"{b / secs / 1e6:.2f}" if secs > 0 else "-"
        out.append(f"<tr><td>{run}</td><td class=n>{n}</td><td class=n>{skipped}</td><td class=n>{secs:.2f}</td>"
                   f"<td class=n>{ips}</td><td class=n>{mbs}</td></tr>")
    out.append("</table>")
    return out


def _bar_chart(counts: Counter) -> str:
    """Horizontal bars, one per category, as inline SVG."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:24]
    top = max(v for _, v in items)
    row, label_w, bar_w = 22, 230, 420
    h = row * len(items) + 10
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + bar_w + 70}' height='{h}' role=img"
           " aria-label='PHI categories'>"]
    palette = ("#0969da", "#8250df", "#bf3989", "#cf222e", "#bc4c00", "#9a6700", "#1a7f37", "#1b7c83")
    for i, (cat, v) in enumerate(items):
        y = 5 + i * row
        w = max(2, round(bar_w * v / top))
        svg.append(f"<text x='{label_w - 8}' y='{y + 15}' text-anchor='end' font-size='12' fill='#1d2733'>{_e(cat)}</text>"
                   f"<rect x='{label_w}' y='{y + 3}' width='{w}' height='{row - 6}' rx='3' fill='{palette[i % len(palette)]}'/>"
                   f"<text x='{label_w + w + 6}' y='{y + 15}' font-size='12' fill='#1d2733'>{v}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _modality_table(dst: Tree, items: dict[str, dict]) -> list[str]:
    from pydicom import dcmread

    by: dict[str, Counter] = defaultdict(Counter)
    for r in items.values():
        rel = str(r.get("output") or "")
        if r.get("status") != "done" or not rel.endswith(".dcm"):
            continue
        mod = "?"
        try:
            with dst.open(rel) as fh:  # the header only: a bucket object is read in blocks, not whole
                ds = dcmread(fh, stop_before_pixels=True, specific_tags=["Modality"])
            mod = str(ds.get("Modality", "") or "?")
        except Exception:  # noqa: BLE001 - the table says '?' for an unreadable header
            pass
        c = by[mod]
        c["items"] += 1
        c["bytes"] += int(r.get("size") or 0)
        c["phi"] += sum((r.get("phi") or {}).values())
        c["boxes"] += len(r.get("pixel_boxes") or [])
    out = ["<h2>By modality</h2>"]
    if not by:
        return out + ["<p class=sub>no DICOM output</p>"]
    out.append("<table><tr><th>modality</th><th>items</th><th>MB in</th><th>PHI findings</th><th>pixel boxes</th></tr>")
    for mod, c in sorted(by.items()):
        out.append(f"<tr><td>{_e(mod)}</td><td class=n>{c['items']}</td><td class=n>{c['bytes'] / 1e6:.2f}</td>"
                   f"<td class=n>{c['phi']}</td><td class=n>{c['boxes']}</td></tr>")
    out.append("</table>")
    return out


def _slide_table(items: dict[str, dict]) -> list[str]:
    by: dict[str, Counter] = defaultdict(Counter)
    for r in items.values():
        m = r.get("manifest") or {}
        if r.get("status") != "done" or not isinstance(m, dict) or "levels" not in m:
            continue
        c = by[str(m.get("format", "?"))]
        c["slides"] += 1
        c["bytes"] += int(r.get("size") or 0)
        c["levels"] += int(m.get("levels") or 0)
        c["fields"] += len(m.get("fields") or {})
        c["associated"] += len(m.get("associated") or {})
        c["tiles flagged"] += len(m.get("tile_redactions") or [])
    out = ["<h2>By slide format</h2>"]
    if not by:
        return out + ["<p class=sub>no slide output</p>"]
    cols = ("slides", "bytes", "levels", "fields", "associated", "tiles flagged")
    heads = ("slides", "MB in", "levels", "metadata fields acted on", "label/macro images acted on", "tiles flagged")
    out.append("<table><tr><th>format</th>" + "".join(f"<th>{h}</th>" for h in heads) + "</tr>")
    for fmt, c in sorted(by.items()):
        cells = "".join(f"<td class=n>{c[k] / 1e6:.1f}</td>" if k == "bytes" else f"<td class=n>{c[k]}</td>" for k in cols)
        out.append(f"<tr><td>{_e(fmt)}</td>{cells}</tr>")
    out.append("</table>")
    return out


def _thumbnails(dst: Tree, items: dict[str, dict], limit: int) -> list[str]:
    out = ["<h2>Pixel redactions (de-identified outputs, redacted areas outlined)</h2>"]
    shown, total = [], 0
    for r in sorted(items.values(), key=lambda r: str(r.get("output", ""))):
        boxes = r.get("pixel_boxes") or []
        rel = str(r.get("output") or "")
        if r.get("status") != "done" or not boxes or not rel.endswith(".dcm"):
            continue
        total += 1
        if len(shown) >= limit:
            continue
        fig = _figure(dst, rel, boxes)
        if fig:
            shown.append(fig)
    if not total:
        return out + ["<p class=sub>no pixel redaction in this job</p>"]
    out.append(f"<p class=sub>{total} output(s) with redactions; {len(shown)} shown.</p><div class=thumbs>")
    return out + shown + ["</div>"]


def _figure(dst: Tree, rel: str, boxes: list[dict]) -> str | None:
    """The output's first redacted frame as a PNG data: URI, with each box outlined by an
    SVG rectangle in stored-pixel coordinates (the viewBox does the scaling)."""
    try:
        png, rows, cols, frame = _render(dst.read(rel), boxes)
    except Exception:  # noqa: BLE001 - an output we cannot render is listed, not drawn
        return f"<figure><figcaption>{_e(rel)}: not renderable</figcaption></figure>"
    scale = THUMB / max(rows, cols)
    w, h = round(cols * scale), round(rows * scale)
    stroke = max(1.5, 2 / scale)
    rects = "".join(
        f"<rect x='{int(b.get('x', 0))}' y='{int(b.get('y', 0))}' width='{int(b.get('w', 0))}' height='{int(b.get('h', 0))}'"
        f" fill='none' stroke='#ff2d55' stroke-width='{stroke:.1f}'><title>{_e(b.get('reason', ''))}</title></rect>"
        for b in boxes if b.get("frame") in (None, frame) and "x" in b)
    data = base64.b64encode(png).decode()
    return (f"<figure><svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' viewBox='0 0 {cols} {rows}'>"
            f"<image href='data:image/png;base64,{data}' width='{cols}' height='{rows}'/>{rects}</svg>"
            f"<figcaption>{_e(rel)}<br>{len(boxes)} box(es), frame {frame if frame is not None else 'all'}</figcaption></figure>")


def _render(data: bytes, boxes: list[dict]) -> tuple[bytes, int, int, int | None]:
    import cv2
    import numpy as np
    from pydicom import dcmread

    from phiscrub.pixels import codec

    ds = dcmread(io.BytesIO(data))
    frames, layout = codec.decode(ds)
    frame = next((b.get("frame") for b in boxes if b.get("frame") is not None), None)
    img = frames[frame if frame is not None and frame < frames.shape[0] else 0]
    photometric = layout.photometric
    if img.ndim == 3 and photometric.startswith("YBR"):
        from pydicom.pixels import convert_color_space

        img = convert_color_space(img, photometric, "RGB")
    if img.ndim == 2:
        lo, hi = np.percentile(img, (0.5, 99.5)) if img.size else (0, 1)
        g = np.clip((img.astype(np.float32) - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            g = 255 - g
        bgr = g
    else:
        rgb = img if img.dtype == np.uint8 else np.clip(img / max(float(img.max()), 1) * 255, 0, 255).astype(np.uint8)
        bgr = cv2.cvtColor(rgb[..., :3], cv2.COLOR_RGB2BGR)
    rows, cols = bgr.shape[:2]
    scale = min(1.0, 2 * THUMB / max(rows, cols))  # twice the display size: crisp on HiDPI
    if scale < 1.0:
        bgr = cv2.resize(bgr, (max(1, round(cols * scale)), max(1, round(rows * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".png", bgr)
    if not ok:
        raise ValueError("png encode failed")
    return buf.tobytes(), rows, cols, frame


def _quarantine(items: dict[str, dict]) -> list[str]:
    bad = [r for r in items.values() if r.get("status") in ("quarantined", "failed")]
    out = [f"<h2>Quarantine and failures ({len(bad)})</h2>"]
    if not bad:
        return out + ["<p class=sub>none</p>"]
    out.append("<table><tr><th>item (keyed hash)</th><th>status</th><th>category</th><th>reason</th></tr>")
    for r in sorted(bad, key=lambda r: (r.get("status", ""), r.get("item", ""))):
        out.append(f"<tr><td><code>{_e(r.get('item', ''))}</code></td><td>{_e(r.get('status', ''))}</td>"
                   f"<td>{_e(r.get('category', ''))}</td><td>{_e(r.get('reason', ''))}</td></tr>")
    out.append("</table>")
    return out
