"""`phiscrub gateway` between dcmtk's storescu (the modality) and a real Orthanc (the
archive, C-STORE and DICOMweb enabled): de-identified instances arrive and hold no planted
value, a caller off the allow-list is refused at association, nothing is lost or doubled
while the destination is down, and a gateway killed with a full queue resumes it.

The gateway runs as its own process (`python -m phiscrub gateway`), as it is deployed, so
kill -9 and restart are real; Orthanc is started on free loopback ports and stopped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests

from tests.conftest import KEY
from tests.pipeline.corpus import make_corpus
from tests.pipeline.orthanc_server import require_orthanc
from tests.pipeline.servers import free_port, stop_process

GW_AET = "PHISCRUBGW"
MODALITY = "MODALITY1"


# ---------------------------------------------------------------- servers


@dataclass
class OrthancNode:
    url: str
    dicom_port: int
    aet: str = "ORTHANC"

    @property
    def cstore_uri(self) -> str:
        return f"dicom://{self.aet}@127.0.0.1:{self.dicom_port}"

    def instances(self) -> list[str]:
        return requests.get(self.url + "/instances", timeout=30).json()

    def files(self) -> list[bytes]:
        return [requests.get(f"{self.url}/instances/{i}/file", timeout=30).content for i in self.instances()]


@contextlib.contextmanager
def orthanc_node(folder: Path, dicom_port: int | None = None) -> Iterator[OrthancNode]:
    """Orthanc 1.10 as a C-STORE SCP: DicomServerEnabled with the gateway registered in
    DicomModalities (DicomAlwaysAllowStore is also true by default), plus its DICOMweb
    plugin for the STOW-RS destination."""
    exe, plugin = require_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    http, dicom = free_port(), dicom_port or free_port()
    config = {
        "Name": "phiscrub-gateway-test", "StorageDirectory": str(folder / "storage"), "IndexDirectory": str(folder / "index"),
        "HttpPort": http, "DicomServerEnabled": True, "DicomAet": "ORTHANC", "DicomPort": dicom,
        "DicomModalities": {"gateway": [GW_AET, "127.0.0.1", 104]}, "DicomAlwaysAllowStore": True,
        "DicomCheckCalledAet": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "SaveJobs": False, "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{http}"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "ab")
    proc = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{http}"
    try:
        _until(lambda: proc.poll() is not None or _get_ok(url + "/system"), 30, "Orthanc did not start")
        assert proc.poll() is None, f"Orthanc exited: see {folder / 'orthanc.log'}"
        yield OrthancNode(url, dicom)
    finally:
        stop_process(proc, 15)
        log.close()


def _get_ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).ok
    except requests.RequestException:
        return False


def _until(cond, timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(what)
        time.sleep(every)


@dataclass
class GatewayProc:
    proc: subprocess.Popen
    port: int
    spool: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def queue(self) -> dict[str, int]:
        db = sqlite3.connect(f"file:{self.spool / 'queue.sqlite'}?mode=ro", uri=True)
        try:
            return dict(db.execute("SELECT stage, COUNT(*) FROM queue GROUP BY stage").fetchall())
        finally:
            db.close()

    def audit(self) -> list[dict]:
        from phiscrub.pipeline.audit import read_records

        return read_records(self.spool / "state" / "audit.jsonl")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_gateway(spool: Path, forward: str, *extra: str, port: int | None = None) -> GatewayProc:
    port = port or free_port()
    spool.mkdir(parents=True, exist_ok=True)
    log = spool.parent / f"{spool.name}.log"
    cmd = [sys.executable, "-m", "phiscrub", "gateway", "--forward", forward, "--ae-title", GW_AET, "--port", str(port),
           "--host", "127.0.0.1", "--allow", MODALITY, "--spool", str(spool), "--backoff-base", "0.2", "--backoff-cap", "1",
           *extra]
    env = {**os.environ, "PHISCRUB_KEY": KEY}
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=spool.parent)
    gw = GatewayProc(proc, port, spool, log)
    _until(lambda: proc.poll() is not None or "listening as" in gw.log_text(), 60, "the gateway did not start")
    assert proc.poll() is None, gw.log_text()[-2000:]
    return gw


def storescu(port: int, files: list[Path], aet: str = MODALITY) -> subprocess.CompletedProcess:
    exe = shutil.which("storescu")
    if exe is None:
        msg = "dcmtk's storescu is not installed (apt-get install dcmtk)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return subprocess.run([exe, "-aet", aet, "-aec", GW_AET, "127.0.0.1", str(port), *map(str, files)],
                          capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- what is checked


def _secrets(corpus) -> list[str]:
    """Planted values, plus the originals' UIDs: the gateway must neither forward nor log them."""
    uids = set()
    for f in corpus.files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
    return [*corpus.planted, *sorted(uids)]


def _leaks(blob: bytes, secrets: list[str]) -> list[str]:
    low = blob.lower()
    return [s for s in secrets if s.lower().encode() in low]


def _scan_folder(root: Path, secrets: list[str], skip: tuple[str, ...] = ()) -> dict[str, list[str]]:
    hits = {}
    for p in root.rglob("*"):
        rel = p.relative_to(root).as_posix()
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        found = _leaks(rel.encode() + b"\n" + (p.read_bytes() if p.is_file() else b""), secrets)
        if found:
            hits[rel] = found
    return hits


def _dataset_bytes(blob: bytes) -> bytes:
    """An instance without its file meta group (a receiver writes a meta group of its own)."""
    assert blob[128:132] == b"DICM"
    group_len = int.from_bytes(blob[140:144], "little")
    return blob[144 + group_len:]


def _forwarded(gw: GatewayProc) -> list[dict]:
    return [r for r in gw.audit() if r["event"] == "forwarded"]


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def node(tmp_path_factory) -> Iterator[OrthancNode]:
    with orthanc_node(tmp_path_factory.mktemp("orthanc")) as o:
        yield o


@pytest.mark.slow
def test_storescu_to_gateway_to_orthanc(tmp_path: Path, node: OrthancNode, cli) -> None:
    """Six instances of two patients through the gateway: Orthanc holds six de-identified
    instances, byte for byte the CLI's outputs, with no planted value or original UID in
    any byte; the spool, state and audit and the gateway's log hold none either."""
    corpus = make_corpus(tmp_path / "in", 6, per_study=3)
    secrets = _secrets(corpus)
    before = set(node.instances())
    gw = start_gateway(tmp_path / "spool", node.cstore_uri)
    try:
        r = storescu(gw.port, corpus.files)
        assert r.returncode == 0, r.stderr[-2000:]
        _until(lambda: len(set(node.instances()) - before) == 6, 60, "Orthanc did not get 6 instances")
        _until(lambda: gw.queue() == {"sent": 6}, 30, f"queue not drained: {gw.queue()}")
    finally:
        gw.stop()
    assert gw.proc.returncode == 0, gw.log_text()[-2000:]
    held = [requests.get(f"{node.url}/instances/{i}/file", timeout=30).content for i in set(node.instances()) - before]
    for blob in held:
        assert not _leaks(blob, secrets)
        ds = pydicom.dcmread(__import__("io").BytesIO(blob))
        assert str(ds.SOPInstanceUID).startswith("2.25.") and "Quorvath" not in str(ds.PatientName)
    # the same transform as the CLI: identical datasets (Orthanc writes its own file meta)
    assert cli("deidentify", tmp_path / "in", tmp_path / "cli-out", "--quiet", "-j", "1").exit_code == 0
    cli_out = {_dataset_bytes(p.read_bytes()) for p in (tmp_path / "cli-out").rglob("*.dcm")}
    assert {_dataset_bytes(b) for b in held} == cli_out
    # nothing left behind that names a patient: spool (originals deleted), state, audit, log
    assert not list((gw.spool / "in").glob("*.dcm"))
    assert _scan_folder(gw.spool, secrets) == {}
    assert not _leaks(gw.log.read_bytes(), secrets)
    from phiscrub.keys import load_key
    from phiscrub.pipeline.audit import check_log

    assert check_log(gw.spool / "state" / "audit.jsonl", load_key()).ok
    items = [r for r in gw.audit() if r["event"] == "item"]
    assert len(items) == 6 and {r["status"] for r in items} == {"done"} and {r["calling_aet"] for r in items} == {MODALITY}
    assert len(_forwarded(gw)) == 6
    assert MODALITY in gw.log_text()  # AE titles and counts are what the log holds


@pytest.mark.slow
def test_calling_ae_not_allowed_is_rejected(tmp_path: Path, node: OrthancNode) -> None:
    corpus = make_corpus(tmp_path / "in", 2, per_study=2, seed=3)
    before = len(node.instances())
    gw = start_gateway(tmp_path / "spool", node.cstore_uri)
    try:
        r = storescu(gw.port, corpus.files, aet="INTRUDER")
        assert r.returncode != 0
        assert "reject" in (r.stdout + r.stderr).lower()
        _until(lambda: "rejected" in gw.log_text(), 10, "no rejection logged")
        time.sleep(0.5)
        assert gw.queue() == {}
        assert not list((gw.spool / "in").iterdir())
    finally:
        gw.stop()
    assert len(node.instances()) == before
    assert any(r["event"] == "association-rejected" and r["calling_aet"] == "INTRUDER" for r in gw.audit())
    assert "INTRUDER" in gw.log_text()


@pytest.mark.slow
def test_stow_rs_destination(tmp_path: Path, node: OrthancNode) -> None:
    corpus = make_corpus(tmp_path / "in", 3, per_study=3, seed=4)
    secrets = _secrets(corpus)
    before = set(node.instances())
    gw = start_gateway(tmp_path / "spool", f"dicomweb+{node.url}/dicom-web")
    try:
        assert storescu(gw.port, corpus.files).returncode == 0
        _until(lambda: len(set(node.instances()) - before) == 3, 60, "Orthanc did not get 3 instances by STOW-RS")
    finally:
        gw.stop()
    for i in set(node.instances()) - before:
        assert not _leaks(requests.get(f"{node.url}/instances/{i}/file", timeout=30).content, secrets)
    assert len(_forwarded(gw)) == 3


@pytest.mark.slow
def test_destination_down_then_up_nothing_lost_or_doubled(tmp_path: Path) -> None:
    """Orthanc is not running when the instances come: they are accepted (durably queued),
    retried with backoff, and delivered once it starts: each once, none missing."""
    corpus = make_corpus(tmp_path / "in", 5, per_study=5, seed=5)
    dicom_port = free_port()
    gw = start_gateway(tmp_path / "spool", f"dicom://ORTHANC@127.0.0.1:{dicom_port}")
    try:
        assert storescu(gw.port, corpus.files).returncode == 0  # accepted though nothing can be forwarded
        _until(lambda: gw.queue().get("outbox") == 5, 30, "instances not queued")
        _until(lambda: gw.log_text().count("destination unavailable") >= 2, 20, "no retries")
        with orthanc_node(tmp_path / "orthanc", dicom_port) as node:
            _until(lambda: gw.queue() == {"sent": 5}, 30, f"queue not drained: {gw.queue()}")
            assert len(node.instances()) == 5
    finally:
        gw.stop()
    outputs = [r["output"] for r in _forwarded(gw)]
    assert len(outputs) == 5 and len(set(outputs)) == 5
    assert not list((gw.spool / "out").rglob("*.dcm"))


@pytest.mark.slow
def test_killed_gateway_resumes_its_queue(tmp_path: Path) -> None:
    """kill -9 with five instances queued (destination down), then a new gateway process on
    the same spool, with Orthanc up: all five arrive, each forwarded once."""
    corpus = make_corpus(tmp_path / "in", 5, per_study=5, seed=6)
    secrets = _secrets(corpus)
    dicom_port = free_port()
    forward = f"dicom://ORTHANC@127.0.0.1:{dicom_port}"
    gw = start_gateway(tmp_path / "spool", forward)
    try:
        assert storescu(gw.port, corpus.files).returncode == 0
        _until(lambda: sum(gw.queue().values()) == 5, 30, "instances not queued")
    finally:
        gw.stop(signal.SIGKILL)
    assert gw.queue().get("sent", 0) == 0
    with orthanc_node(tmp_path / "orthanc", dicom_port) as node:
        gw2 = start_gateway(tmp_path / "spool", forward)
        try:
            _until(lambda: gw2.queue() == {"sent": 5}, 60, f"queue not resumed: {gw2.queue()}")
            assert len(node.instances()) == 5
            for blob in node.files():
                assert not _leaks(blob, secrets)
        finally:
            gw2.stop()
    assert len(_forwarded(gw2)) == 5
    assert len({r["output"] for r in _forwarded(gw2)}) == 5
    assert _scan_folder(gw2.spool, secrets) == {}


# ---------------------------------------------------------------- in-process, no servers


def test_association_limit_and_allow_list_in_process(tmp_path: Path) -> None:
    """pynetdicom enforces both at association: a caller off the list and an association
    past --max-associations are refused; an allowed caller gets through (C-ECHO)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from phiscrub.keys import load_key
    from phiscrub.policy import load_config
    from phiscrub.service.gateway import Gateway, GatewayOptions

    opts = GatewayOptions(forward="dicom://NOWHERE@127.0.0.1:9", spool=tmp_path / "spool", ae_title=GW_AET,
                          host="127.0.0.1", port=0, allowed=(MODALITY,), max_associations=1)
    gw = Gateway(opts, load_config(None), load_key())
    gw.start()
    try:
        def assoc(aet: str):
            ae = AE(ae_title=aet)
            ae.add_requested_context(Verification)
            return ae.associate("127.0.0.1", gw.port, ae_title=GW_AET)

        intruder = assoc("INTRUDER")
        assert intruder.is_rejected
        first = assoc(MODALITY)
        assert first.is_established and first.send_c_echo().Status == 0
        second = assoc(MODALITY)
        assert not second.is_established  # the one allowed association is in use
        first.release()

        def accepted() -> bool:
            a = assoc(MODALITY)
            if a.is_established:
                a.release()
            return a.is_released

        _until(accepted, 10, "not accepted once the first was released")
    finally:
        gw.stop()


def test_queue_is_durable_and_deduplicates(tmp_path: Path) -> None:
    from phiscrub.service.gateway_queue import SpoolQueue

    q = SpoolQueue(tmp_path / "spool")
    assert q.add("k1", b"instance one", MODALITY) is True
    assert q.add("k1", b"instance one", MODALITY) is False  # the same bytes again: nothing twice
    (q.inbox / ".partial-1-k2.dcm").write_bytes(b"torn")  # a write a kill interrupted
    (q.inbox / "k3.dcm").write_bytes(b"never acknowledged")  # renamed, row never committed
    q.close()
    q = SpoolQueue(tmp_path / "spool")  # a restart
    assert sorted(p.name for p in q.inbox.iterdir()) == ["k1.dcm"]
    assert q.counts() == {"received": 1} and (q.inbox / "k1.dcm").read_bytes() == b"instance one"
    assert oct(q.inbox.stat().st_mode & 0o777) == "0o700" and oct((q.inbox / "k1.dcm").stat().st_mode & 0o777) == "0o600"
    q.close()


def test_gateway_cli_refuses_without_allow_list(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from phiscrub.cli import app

    r = CliRunner().invoke(app, ["gateway", "--forward", "dicom://X@127.0.0.1:9"])
    assert r.exit_code == 2 and "--allow" in r.output
    r = CliRunner().invoke(app, ["gateway", "--forward", "ftp://x", "--allow-any", "--spool", str(tmp_path / "s"), "--port", "0"])
    assert r.exit_code == 2 and "--forward is" in r.output and not (tmp_path / "s").exists()
