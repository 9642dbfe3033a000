"""DICOMweb as a source and a sink, against a real Orthanc with its DICOMweb plugin: a store
of synthetic studies with PHI planted in every attribute the Annex E table removes, read
through QIDO-RS/WADO-RS, de-identified, written to a folder and through STOW-RS to a second
store, then every output byte (read back with WADO-RS) scanned for every planted value.
Error mapping and the bearer token are checked against a small local HTTP server that
answers with the statuses a real store sends under trouble."""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import io
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
import requests
from pydicom import dcmread

from phiscrub.errors import ConfigError, StorageError, TransientError
from phiscrub.keys import load_key
from phiscrub.pipeline.dicomweb import DicomwebSink, DicomwebSource, multipart_parts
from phiscrub.pipeline.sinks import atomic_write
from phiscrub.pipeline.storage import Item, open_sink, open_source
from phiscrub.policy import load_config
from phiscrub.transform import transform_dicom

from ..conftest import TEST_FILES
from ..test_leak import make_planted_file
from .orthanc_server import Orthanc, running_orthanc

# (patient name, patient id, study date, modality) per study; two series of two instances each
STUDIES = [
    ("Quorvath^Annelise", "QPID-7731", "20240115", "CT"),
    ("Quorvath^Annelise", "QPID-7731", "20240302", "MR"),
    ("Zembrowski^Tadeusz", "ZPID-5120", "20230611", "CT"),
]
SERIES_PER_STUDY, INSTANCES_PER_SERIES = 2, 2
N_INSTANCES = len(STUDIES) * SERIES_PER_STUDY * INSTANCES_PER_SERIES


def study_uid(i: int) -> str:
    return f"1.2.826.0.1.3680043.10.777.{i + 1}"


def make_corpus(folder: Path) -> tuple[dict[str, bytes], list[str]]:
    """{source path name: bytes}, planted values. Every file carries the full Annex E plant
    of the leak test, plus its own names, IDs and UIDs."""
    folder.mkdir(parents=True, exist_ok=True)
    base = folder / "base.dcm"
    planted = make_planted_file(base)
    files: dict[str, bytes] = {}
    for s, (name, pid, date, modality) in enumerate(STUDIES):
        for se in range(SERIES_PER_STUDY):
            for k in range(INSTANCES_PER_SERIES):
                ds = dcmread(base)
                ds.PatientName, ds.PatientID, ds.StudyDate, ds.Modality = name, pid, date, modality
                ds.StudyInstanceUID = study_uid(s)
                ds.SeriesInstanceUID = f"{study_uid(s)}.{se + 1}"
                ds.SOPInstanceUID = f"{study_uid(s)}.{se + 1}.{k + 1}"
                ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
                ds.InstanceNumber = k + 1
                buf = io.BytesIO()
                ds.save_as(buf, enforce_file_format=True)
                files[f"{name.replace('^', '_')}_{s}_{se}_{k}.dcm"] = buf.getvalue()
                planted += [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID]
    base.unlink()
    for n, pid, _, _ in STUDIES:
        planted += [n, *n.split("^"), pid]
    return files, sorted(set(planted))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[dict[str, bytes], list[str]]:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def src_store(tmp_path_factory, corpus) -> Orthanc:
    with running_orthanc(tmp_path_factory.mktemp("orthanc-src")) as o:
        for data in corpus[0].values():
            o.upload(data)
        assert o.count() == N_INSTANCES
        yield o


@pytest.fixture(scope="module")
def _dst_server(tmp_path_factory) -> Orthanc:
    with running_orthanc(tmp_path_factory.mktemp("orthanc-dst")) as o:
        yield o


@pytest.fixture
def dst_store(_dst_server: Orthanc) -> Orthanc:
    """An empty store for each test (one server per module: Orthanc takes 2 s to stop)."""
    for patient in requests.get(_dst_server.url + "/patients", timeout=60).json():
        requests.delete(f"{_dst_server.url}/patients/{patient}", timeout=60).raise_for_status()
    assert _dst_server.count() == 0
    return _dst_server


def leaks(outputs: list[tuple[str, bytes]], corpus: tuple[dict[str, bytes], list[str]]) -> dict[str, int]:
    """Planted values (as planted, upper, lower) found in any output's bytes or name.

    Dates are shifted, not removed, and the plant holds some 300 dates: one patient's
    offset can carry one planted date exactly onto another. Only those exact landings are
    let pass, per patient (computed from the key, as the transform does), and they must be
    few; an unshifted date anywhere is still a hit."""
    from phiscrub.dicom.identity import patient_identity

    files, planted = corpus
    cfg, keys, _ = _job()
    identities = {keys.patient_id(i): i for i in {patient_identity(dcmread(io.BytesIO(d))) for d in files.values()}}
    hits: dict[str, int] = defaultdict(int)
    excused = 0
    for name, data in outputs:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        off = keys.date_offset(identities[str(ds.PatientID)], cfg.policy.date_shift_min, cfg.policy.date_shift_max)
        landed = {_shift(n[:8], off) for n in planted if _is_date(n)}
        blob = name.encode() + b"\n" + data
        for needle in planted:
            if len(needle) < 4:
                continue
            if _is_date(needle) and needle[:8] in landed:
                excused += 1
                continue
            for form in {needle, needle.upper(), needle.lower()}:
                if form.encode() in blob:
                    hits[form] += 1
    assert excused <= 2 * len(outputs), "too many planted dates excused: the scan would prove little"
    return dict(hits)


def _is_date(v: str) -> bool:
    return v.isdigit() and len(v) in (8, 14)


def _shift(yyyymmdd: str, days: int) -> str:
    import datetime as dt

    try:
        return (dt.datetime.strptime(yyyymmdd, "%Y%m%d") + dt.timedelta(days=days)).strftime("%Y%m%d")
    except ValueError:
        return ""


def _job():
    cfg = load_config(None)
    return cfg, load_key(None), cfg.policy.digest()


def wado_read_back(store: Orthanc) -> dict[str, bytes]:
    """Every instance in the store, listed by QIDO-RS and fetched by WADO-RS, parsed with
    the stdlib's MIME parser (not ours, so the check does not lean on the code under test)."""
    listing = requests.get(store.dicomweb + "/instances", headers={"Accept": "application/dicom+json"}, timeout=60)
    listing.raise_for_status()
    out = {}
    for inst in listing.json():
        st, se, sop = (inst[t]["Value"][0] for t in ("0020000D", "0020000E", "00080018"))
        r = requests.get(f"{store.dicomweb}/studies/{st}/series/{se}/instances/{sop}", timeout=60,
                         headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        r.raise_for_status()
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + r.headers["Content-Type"].encode() + b"\r\n\r\n" + r.content)
        parts = [p.get_payload(decode=True) for p in msg.iter_parts()]
        assert len(parts) == 1
        out[sop] = parts[0]
    return out


def check_hierarchy(pairs: list[tuple[str, bytes]]) -> None:
    """(source study UID, output bytes): one new study UID per source study, none shared,
    one patient pseudonym per source patient, every output series inside its new study."""
    new_studies: dict[str, set[str]] = defaultdict(set)
    patients: dict[str, set[str]] = defaultdict(set)
    series_study: dict[str, set[str]] = defaultdict(set)
    for src_study, data in pairs:
        ds = dcmread(io.BytesIO(data))
        new_studies[src_study].add(str(ds.StudyInstanceUID))
        source_patient = STUDIES[int(src_study.rsplit(".", 1)[1]) - 1][1]
        patients[source_patient].add(str(ds.PatientID))
        series_study[str(ds.SeriesInstanceUID)].add(str(ds.StudyInstanceUID))
    assert all(len(v) == 1 for v in new_studies.values()), new_studies
    assert len({next(iter(v)) for v in new_studies.values()}) == len(new_studies)
    assert all(len(v) == 1 for v in patients.values())
    assert len({next(iter(v)) for v in patients.values()}) == len(patients)
    assert all(len(v) == 1 for v in series_study.values())
    assert len(series_study) == len(new_studies) * SERIES_PER_STUDY


@pytest.mark.slow
def test_store_to_folder(src_store: Orthanc, corpus, tmp_path: Path) -> None:
    files, planted = corpus
    cfg, keys, ph = _job()
    src = open_source("dicomweb+" + src_store.dicomweb)
    items = list(src.items())
    assert len(items) == N_INSTANCES
    assert items == sorted(items, key=lambda i: (i.study, i.uri))  # a stable order for resume
    assert {i.study for i in items} == {study_uid(s) for s in range(len(STUDIES))}
    originals = set(files.values())
    out = tmp_path / "out"
    pairs = []
    started = time.perf_counter()
    for item in items:
        data = src.read(item)
        assert data in originals  # WADO-RS with transfer-syntax=* hands back the stored bytes
        assert item.version == str(dcmread(io.BytesIO(data)).SOPInstanceUID)
        o = transform_dicom(data, cfg, keys, ph)
        atomic_write(out / o.relpath, o.data, durable=False)
        pairs.append((item.study, o.data))
    rate = len(items) / (time.perf_counter() - started)
    print(f"store -> folder: {rate:.1f} instances/s")
    written = [(str(p.relative_to(out)), p.read_bytes()) for p in sorted(out.rglob("*")) if p.is_file()]
    assert len(written) == N_INSTANCES
    assert leaks(written, corpus) == {}
    check_hierarchy(pairs)


@pytest.mark.slow
def test_folder_to_store(corpus, dst_store: Orthanc, tmp_path: Path) -> None:
    files, planted = corpus
    cfg, keys, ph = _job()
    sink = open_sink("dicomweb+" + dst_store.dicomweb)
    assert isinstance(sink, DicomwebSink)
    sent: dict[str, bytes] = {}
    pairs = []
    started = time.perf_counter()
    for data in files.values():
        o = transform_dicom(data, cfg, keys, ph)
        assert not sink.exists(o.relpath)
        uri = sink.write(o.relpath, o.data)
        assert sink.exists(o.relpath)
        sop = o.relpath.rsplit("/", 1)[1][:-4]
        assert uri.startswith("dicomweb+" + dst_store.dicomweb + "/studies/") and uri.endswith("/instances/" + sop)
        sent[sop] = o.data
        pairs.append((str(dcmread(io.BytesIO(data)).StudyInstanceUID), o.data))
    rate = len(files) / (time.perf_counter() - started)
    print(f"folder -> store: {rate:.1f} instances/s (transform + STOW-RS + 2 QIDO-RS each)")
    back = wado_read_back(dst_store)
    assert dst_store.count() == N_INSTANCES == len(back)
    assert back == sent  # stored whole, byte for byte
    assert leaks(sorted(back.items()), corpus) == {}
    check_hierarchy(pairs)
    # a second write of the same instance is accepted (a retried write is not an error)
    o = transform_dicom(next(iter(files.values())), cfg, keys, ph)
    sink.write(o.relpath, o.data)
    assert dst_store.count() == N_INSTANCES
    assert not sink.exists("not/a/dicom/path.txt") and not sink.exists("p/1.2/x y/1.3.dcm")


@pytest.mark.slow
def test_store_to_store_through_source_and_sink(src_store: Orthanc, dst_store: Orthanc, corpus) -> None:
    _, planted = corpus
    cfg, keys, ph = _job()
    src = DicomwebSource("dicomweb+" + src_store.dicomweb, studies=[study_uid(0)])
    sink = DicomwebSink("dicomweb+" + dst_store.dicomweb)
    for item in src.items():
        o = transform_dicom(src.read(item), cfg, keys, ph)
        sink.write(o.relpath, o.data)
    back = wado_read_back(dst_store)
    assert len(back) == SERIES_PER_STUDY * INSTANCES_PER_SERIES
    assert leaks(sorted(back.items()), corpus) == {}
    assert len({str(dcmread(io.BytesIO(b)).StudyInstanceUID) for b in back.values()}) == 1


def _studies(src) -> set[str]:
    return {i.study for i in src.items()}


@pytest.mark.slow
def test_selection(src_store: Orthanc) -> None:
    url = "dicomweb+" + src_store.dicomweb
    s0, s1, s2 = (study_uid(i) for i in range(3))
    per_study = SERIES_PER_STUDY * INSTANCES_PER_SERIES
    # by a list of study UIDs (option, and in the query string); unknown ones are counted, not fatal
    src = open_source(url, studies=[s2, s0, "1.2.3.4.5.404"])
    items = list(src.items())
    assert {i.study for i in items} == {s0, s2} and len(items) == 2 * per_study
    assert src.missing_studies == 1
    assert _studies(open_source(f"{url}?StudyInstanceUID={s1},{s2}")) == {s1, s2}
    # by a QIDO query on the study level
    assert _studies(open_source(url + "?ModalitiesInStudy=MR")) == {s1}
    assert _studies(open_source(url + "?StudyDate=20240101-")) == {s0, s1}
    assert _studies(open_source(url, query="ModalitiesInStudy=CT&StudyDate=20240101-")) == {s0}
    assert _studies(open_source(url + "?PatientID=NOBODY")) == set()
    # a list and a query together: both must hold
    assert _studies(open_source(url + "?ModalitiesInStudy=CT", studies=[s0, s1])) == {s0}
    # by path: a study, a series, one instance (an item's own URI opens as a source of itself)
    assert len(list(open_source(f"{url}/studies/{s1}").items())) == per_study
    assert len(list(open_source(f"{url}/studies/{s1}/series/{s1}.2").items())) == INSTANCES_PER_SERIES
    one = next(iter(open_source(url).items()))
    assert list(open_source(one.uri).items()) == [one]


@pytest.mark.slow
def test_paging(src_store: Orthanc) -> None:
    """A page size smaller than every level still lists each instance once."""
    src = DicomwebSource("dicomweb+" + src_store.dicomweb, page_size=1)
    items = list(src.items())
    assert len(items) == N_INSTANCES == len(set(items))


@pytest.mark.slow
def test_source_travels_to_workers(src_store: Orthanc, corpus) -> None:
    """Pickled into a worker process and read from several threads at once (a Dask worker
    runs tasks in threads: one HTTP session per thread)."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    src = pickle.loads(pickle.dumps(open_source("dicomweb+" + src_store.dicomweb)))
    items = list(src.items())
    with ThreadPoolExecutor(4) as ex:
        datas = list(ex.map(src.read, items))
    assert sorted(datas) == sorted(corpus[0].values())
    # head then read: one WADO-RS fetch, the same bytes
    assert src.head(items[0], 132)[128:] == b"DICM"
    assert src.read(items[0]) == datas[0] and src.read(items[1]) == datas[1]


@pytest.mark.slow
def test_missing_instance_and_bad_uris(src_store: Orthanc) -> None:
    src = open_source("dicomweb+" + src_store.dicomweb)
    ghost = "1.2.826.0.1.3680043.10.777.99.1.1"
    with pytest.raises(StorageError) as e:
        src.read(Item(f"dicomweb+{src_store.dicomweb}/studies/{ghost}/series/{ghost}/instances/{ghost}", 0, ghost))
    assert str(e.value) == "DICOMweb WADO-RS: HTTP 404" and ghost not in str(e.value)
    with pytest.raises(ConfigError):
        DicomwebSource("dicomweb+ftp://example.invalid/x")
    with pytest.raises(ConfigError):
        open_source("dicomweb+" + src_store.dicomweb, studies=["Quorvath"])  # not a UID: never sent
    with pytest.raises(ConfigError):
        open_sink("dicomweb+" + src_store.dicomweb + "/studies/1.2.3")


def test_connection_refused_is_transient() -> None:
    from .servers import free_port

    src = open_source(f"dicomweb+http://127.0.0.1:{free_port()}/dicom-web")
    with pytest.raises(TransientError) as e:
        list(src.items())
    assert "127.0.0.1" not in str(e.value)


class _Stub(http.server.BaseHTTPRequestHandler):
    """Answers every request with the status (and body) queued by the test, recording the
    Authorization header it was sent."""

    answers: list[tuple] = []  # (status, body[, content type])
    seen_auth: list[str | None] = []

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(n)
        type(self).seen_auth.append(self.headers.get("Authorization"))
        code, body, *ctype = type(self).answers.pop(0) if type(self).answers else (500, b"")
        self.send_response(code)
        self.send_header("Content-Type", ctype[0] if ctype else "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:  # keep test output clean
        pass


@pytest.fixture
def stub():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    _Stub.answers, _Stub.seen_auth = [], []
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"dicomweb+http://127.0.0.1:{server.server_address[1]}/dicomWeb", _Stub
    server.shutdown()
    server.server_close()


def _instance() -> bytes:
    return (TEST_FILES / "CT_small.dcm").read_bytes()


@pytest.mark.parametrize(("code", "error"), [(503, TransientError), (500, TransientError), (429, TransientError),
                                              (403, StorageError), (400, StorageError)])
def test_status_mapping(stub, code, error) -> None:
    url, handler = stub
    handler.answers = [(code, b"")]
    with pytest.raises(error) as e:
        list(open_source(url).items())
    assert str(e.value) == f"DICOMweb QIDO-RS: HTTP {code}"


def test_stow_failures_are_per_instance_and_typed(stub) -> None:
    url, handler = stub
    sink = open_sink(url)
    data = _instance()
    refused = b'{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [49442]}}]}}'
    handler.answers = [(409, refused), (404, b"")]  # refused, and not in the store either
    with pytest.raises(StorageError):
        sink.write("p/1.2/1.3/1.4.dcm", data)
    # refused as a duplicate (a write retried after a crash): fine if the store holds our bytes...
    mime = 'multipart/related; type="application/dicom"; boundary=xyz'
    handler.answers = [(409, refused), (200, b"--xyz\r\n\r\n" + data + b"\r\n--xyz--\r\n", mime)]
    assert sink.write("p/1.2/1.3/1.4.dcm", data).endswith("/instances/" + str(dcmread(io.BytesIO(data)).SOPInstanceUID))
    # ...and a refusal naming no value if it holds something else under the UID
    handler.answers = [(409, refused), (200, b"--xyz\r\n\r\nOTHER\r\n--xyz--\r\n", mime)]
    with pytest.raises(StorageError) as e:
        sink.write("p/1.2/1.3/1.4.dcm", data)
    assert str(e.value) == "DICOMweb STOW-RS: the store holds a different instance under this UID"
    handler.answers = [(200, refused), (404, b"")]  # a 200 that lists the instance as failed is still a failure
    with pytest.raises(StorageError) as e:
        sink.write("p/1.2/1.3/1.4.dcm", data)
    assert str(e.value) == "DICOMweb STOW-RS: instance refused (failure reason 0xC122)"
    busy = b'{"00081198": {"vr": "SQ", "Value": [{"00081197": {"vr": "US", "Value": [42752]}}]}}'
    handler.answers = [(202, busy), (404, b"")]  # 0xA700 out of resources: worth a retry
    with pytest.raises(TransientError):
        sink.write("p/1.2/1.3/1.4.dcm", data)
    handler.answers = [(200, b'{"00081199": {"vr": "SQ", "Value": [{}]}}')]
    assert sink.write("p/1.2/1.3/1.4.dcm", data).startswith(url + "/studies/")


def test_bearer_token_from_env_and_file(stub, tmp_path: Path, monkeypatch, caplog) -> None:
    url, handler = stub
    secret = "ya29.secret-token-value"
    monkeypatch.setenv("PHISCRUB_DICOMWEB_TOKEN", secret)
    handler.answers = [(200, b"[]")]
    assert list(open_source(url).items()) == []
    assert handler.seen_auth == [f"Bearer {secret}"]
    # from a token file; a 401 rereads the file once (the token was renewed beside us)
    monkeypatch.delenv("PHISCRUB_DICOMWEB_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    src = open_source(url, token_file=str(token_file))
    handler.answers = [(200, b"[]")]
    list(src.items())
    token_file.write_text("new-token\n")
    handler.answers, handler.seen_auth = [(401, b""), (200, b"[]")], []
    list(src.items())
    assert handler.seen_auth == ["Bearer old-token", "Bearer new-token"]
    handler.answers = [(401, b""), (401, b"")]
    with pytest.raises(StorageError) as e:
        list(src.items())
    assert "token" not in str(e.value)
    assert secret not in caplog.text and "new-token" not in caplog.text


def test_multipart_parser() -> None:
    body = b"--b1\r\nContent-Type: application/dicom\r\n\r\nAB\r\n--b1\r\n\r\nC\r\n--b1--\r\n"
    assert multipart_parts(body, 'multipart/related; type="application/dicom"; boundary="b1"') == [b"AB", b"C"]
    from phiscrub.errors import CorruptFile

    with pytest.raises(CorruptFile):
        multipart_parts(body[:30], "multipart/related; boundary=b1")
    with pytest.raises(CorruptFile):
        multipart_parts(body, "application/dicom")


def test_scheme_loads_on_first_use() -> None:
    """A worker that only has a URI (no import of the backend) can open it."""
    import subprocess
    import sys

    code = ("from phiscrub.pipeline.storage import open_sink, open_source;"
            "print(type(open_source('dicomweb+https://h.example/v1/dicomWeb')).__name__,"
            " type(open_sink('dicomweb+http://127.0.0.1:9/dicom-web')).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.split() == ["DicomwebSource", "DicomwebSink"]


def check_grouping(outputs: list[bytes]) -> None:
    """Without knowing which source each output came from: the outputs fall into as many
    new studies as there were source studies, each with its series and instances, and into
    as many patient pseudonyms as there were patients."""
    studies: dict[str, list[str]] = defaultdict(list)
    patients = set()
    for data in outputs:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
        studies[str(ds.StudyInstanceUID)].append(str(ds.SeriesInstanceUID))
        patients.add(str(ds.PatientID))
    assert len(studies) == len(STUDIES)
    assert all(len(v) == SERIES_PER_STUDY * INSTANCES_PER_SERIES for v in studies.values())
    assert all(len(set(v)) == SERIES_PER_STUDY for v in studies.values())
    assert len(patients) == len({pid for _, pid, _, _ in STUDIES})


def _plain_preamble(files: dict[str, bytes]) -> dict[str, bytes]:
    """pydicom's CT_small carries a TIFF header in its preamble (a dual-format file); the
    runner tests below are about the DICOMweb path, so they get the usual zero preamble and
    test_cli_tiff_preamble_from_store covers that case on its own."""
    return {k: b"\0" * 128 + v[128:] for k, v in files.items()}


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory, corpus) -> Orthanc:
    with running_orthanc(tmp_path_factory.mktemp("orthanc-plain")) as o:
        for data in _plain_preamble(corpus[0]).values():
            o.upload(data)
        yield o


@pytest.mark.slow
def test_cli_store_to_folder(plain_store: Orthanc, corpus, tmp_path: Path, cli, monkeypatch) -> None:
    src_store = plain_store
    monkeypatch.chdir(tmp_path)  # a CLI that took the URI for a path must not litter elsewhere
    res = cli("deidentify", "dicomweb+" + src_store.dicomweb, tmp_path / "out", "-q", "-j", "1")
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    written = [(str(p.relative_to(out)), p.read_bytes()) for p in sorted(out.rglob("*.dcm"))]
    assert len(written) == N_INSTANCES
    assert leaks(written, corpus) == {}
    check_grouping([d for _, d in written])
    # the same SRC narrowed by a QIDO query: only the MR study
    res = cli("deidentify", f"dicomweb+{src_store.dicomweb}?ModalitiesInStudy=MR", tmp_path / "mr", "-q", "-j", "1")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "mr").rglob("*.dcm"))) == SERIES_PER_STUDY * INSTANCES_PER_SERIES
    # ...and by a study list file
    (tmp_path / "studies.txt").write_text(f"{study_uid(0)}\n{study_uid(2)}\n")
    res = cli("deidentify", "dicomweb+" + src_store.dicomweb, tmp_path / "two", "-q", "-j", "1",
              "--studies", tmp_path / "studies.txt")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "two").rglob("*.dcm"))) == 2 * SERIES_PER_STUDY * INSTANCES_PER_SERIES


@pytest.mark.slow
def test_cli_folder_to_store(corpus, dst_store: Orthanc, tmp_path: Path, cli, monkeypatch) -> None:
    files, _ = corpus
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "Quorvath_Annelise"
    src.mkdir()
    for name, data in _plain_preamble(files).items():
        (src / name).write_bytes(data)
    res = cli("deidentify", src, "dicomweb+" + dst_store.dicomweb, "-q", "-j", "1",
              "--state", tmp_path / "state")
    assert res.exit_code == 0, res.output
    back = wado_read_back(dst_store)
    assert len(back) == N_INSTANCES
    assert leaks(sorted(back.items()), corpus) == {}
    check_grouping(list(back.values()))
    # a rerun of the same command skips what is done and stores nothing twice
    res = cli("deidentify", src, "dicomweb+" + dst_store.dicomweb, "-q", "-j", "1", "--state", tmp_path / "state")
    assert res.exit_code == 0, res.output
    assert dst_store.count() == N_INSTANCES


@pytest.mark.slow
def test_cli_store_to_store(plain_store: Orthanc, dst_store: Orthanc, corpus, tmp_path: Path, cli, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = cli("deidentify", "dicomweb+" + plain_store.dicomweb, "dicomweb+" + dst_store.dicomweb, "-q", "-j", "2",
              "--state", tmp_path / "state")
    assert res.exit_code == 0, res.output
    back = wado_read_back(dst_store)
    assert len(back) == N_INSTANCES
    assert leaks(sorted(back.items()), corpus) == {}
    check_grouping(list(back.values()))


@pytest.mark.slow
def test_cli_tiff_preamble_from_store(src_store: Orthanc, corpus, tmp_path: Path, cli, monkeypatch) -> None:
    """A dual-format instance (TIFF header in the 128-byte preamble, 'DICM' after it) from a
    store is DICOM and is de-identified like any other."""
    monkeypatch.chdir(tmp_path)
    assert next(iter(corpus[0].values()))[:4] == b"II*\x00"
    res = cli("deidentify", "dicomweb+" + src_store.dicomweb + "/studies/" + study_uid(2), tmp_path / "out", "-q")
    assert res.exit_code == 0, res.output
    written = [(str(p.relative_to(tmp_path / "out")), p.read_bytes()) for p in sorted((tmp_path / "out").rglob("*.dcm"))]
    assert len(written) == SERIES_PER_STUDY * INSTANCES_PER_SERIES
    assert leaks(written, corpus) == {}


def test_runner_retries_what_dicomweb_calls_transient() -> None:
    """The runner's retry decides by phiscrub.errors' classes: a 503 or a STOW 'out of
    resources' (no HTTP error, no cause) is retried, a 404 or a refusal is not."""
    from phiscrub.pipeline.retry import is_transient

    assert is_transient(TransientError("DICOMweb WADO-RS: HTTP 503"))
    assert is_transient(TransientError("DICOMweb STOW-RS: instance not stored (failure reason 0xA700)"))
    assert not is_transient(StorageError("DICOMweb WADO-RS: HTTP 404"))
    try:
        try:
            raise ConnectionError("reset")
        except ConnectionError:
            raise StorageError("DICOMweb STOW-RS: instance refused (failure reason 0xC122)") from None
    except StorageError as e:
        assert not is_transient(e)  # its context was a connection error, its verdict is not
