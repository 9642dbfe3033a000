"""The dashboard at GET /: one self-contained page (no script, nothing fetched), holding no
planted value or source name, screenshotted in headless Chromium; the browser's sign-in
(cookie) and a review decision through its form with the CSRF value, audited."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from phiscrub.service.auth import COOKIE, csrf_value
from tests.conftest import scan_tree
from tests.pipeline.corpus import make_corpus
from tests.screenshots import HAS_CHROMIUM, screenshot
from tests.service.serve import TOKEN, serve

pytestmark = pytest.mark.slow  # a server process and a job (about 7 s)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("svc-dash")
    src = work / "jobs" / "Quorvath_inbox"
    corpus = make_corpus(src, 8, per_study=4, seed=8)
    (src / "Quorvath80000_Annelise_scan_notes.dcm").write_bytes(b"DICM not really" * 20)
    with serve(work, {"PHISCRUB_SERVE_JOB_ROOTS": str(work / "jobs")}) as s:
        c = s.client()
        op = c.post("/v1/jobs", json={"src": str(src), "dst": str(work / "jobs" / "out")}).json()
        end = time.monotonic() + 60
        while not c.get("/v1/" + op["name"]).json()["done"]:
            assert time.monotonic() < end
            time.sleep(0.2)
        for f in corpus.files[:3]:
            assert c.post("/v1/deidentify", content=f.read_bytes()).status_code == 200
        assert c.post("/v1/deidentify", content=corpus.files[0].read_bytes()[:2326]).status_code == 422
        yield s, corpus.planted + [p.stem for p in corpus.files] + ["Quorvath_inbox", "scan_notes"]


def test_dashboard_is_self_contained_and_holds_no_value(env) -> None:
    server, needles = env
    r = server.client().get("/")
    assert r.status_code == 200
    html = r.text
    assert "default-src 'none'" in r.headers["content-security-policy"] and "default-src 'none'" in html
    assert "<script" not in html.lower() and "url(" not in html and "@import" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*['"](?!data:)""", html)
    assert not re.search(r"https?://(?!www.w3.org/2000/svg)", html)
    # jobs with their counters, charts, and the review queue with the junk file under its keyed hash
    assert "Items by channel and status" in html and html.count("<svg") == 2 and html.count("<rect") >= 6
    assert re.search(r"<td>job</td><td>unknown</td><td>not-dicom</td>", html) or "not-dicom" in html
    queue = server.client().get("/v1/review").json()["items"]
    assert len(queue) == 1 and queue[0]["id"] in html
    assert ">8</td><td>1</td><td>0</td>" in html  # success, failure, pending of the job
    page = server.state.parent / "scan" / "dashboard.html"
    page.parent.mkdir(exist_ok=True)
    page.write_text(html)
    assert scan_tree(page.parent, needles) == {}


@pytest.mark.skipif(not HAS_CHROMIUM, reason="needs the Debian package chromium (CI installs it)")
def test_dashboard_screenshot_in_headless_chromium(env, tmp_path: Path) -> None:
    import numpy as np

    server, needles = env
    page = tmp_path / "dashboard.html"  # the page as served: it needs nothing but itself
    page.write_text(server.client().get("/").text)
    img = screenshot(page, tmp_path, 1200, 1400, "dashboard.png")
    green = np.all(np.abs(img.astype(int) - (0x5b, 0x9d, 0x2e)) < 30, axis=2).sum()  # the 'done' bars (BGR)
    amber = np.all(np.abs(img.astype(int) - (0x00, 0xa1, 0xe0)) < 30, axis=2).sum()  # the 'quarantined' bar
    assert green > 500 and amber > 50, (green, amber)


def test_browser_sign_in_and_a_review_decision_by_form(env) -> None:
    server, _ = env
    browser = server.client(token=None)
    assert browser.post("/login", data={"token": "wrong-token-000000000000"}).status_code == 401
    r = browser.post("/login", data={"token": TOKEN})
    assert r.status_code == 303 and COOKIE in r.cookies
    set_cookie = r.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    browser.cookies.set(COOKIE, r.cookies[COOKIE])
    assert browser.get("/").status_code == 200
    rid = server.client().get("/v1/review").json()["items"][0]["id"]
    # a form post without the CSRF value, or a cookie-borne JSON call, is refused
    assert browser.post(f"/v1/review/{rid}/reject", data={"csrf": "nope"}).status_code == 403
    assert browser.post(f"/v1/review/{rid}/reject").status_code == 403
    done = browser.post(f"/v1/review/{rid}/reject", data={"csrf": csrf_value(TOKEN)})
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert server.client().get("/v1/review").json()["items"] == []
    assert "rejected" in browser.get("/").text
    recs = [json.loads(x) for x in (server.state / "audit.jsonl").read_text().splitlines()]
    assert [x["item"] for x in recs if x["event"] == "review-reject"] == [rid]
    assert any(x["event"] == "dashboard-login" and x["outcome"] == "refused" for x in recs)
    assert browser.post("/logout").status_code == 303
