"""A DICOMweb store as a source (QIDO-RS to list, WADO-RS to read) and a sink (STOW-RS).

SRC/DST is ``dicomweb+https://HOST/BASE`` where ``https://HOST/BASE`` is the store's DICOMweb
root: a Google Healthcare API store's ``.../dicomStores/STORE/dicomWeb``, Orthanc's
``/dicom-web``. A source can be narrowed by path (``.../studies/UID[/series/UID[/instances/UID]]``),
by a QIDO query string on the study level (``?ModalitiesInStudy=CT&StudyDate=20240101-``,
``StudyInstanceUID=A,B`` is a list), or by the ``studies=`` option.

Why not dicomweb-client: it works on pydicom Datasets (it parses what it retrieves and
re-encodes what it stores), while the runner must move the exact bytes it read, transformed
and verified; what remains (a QIDO GET, a one-part multipart body each way) is a few lines
over requests, with the error mapping the retry logic needs (4xx permanent, 5xx/429 and
connection trouble transient).

Nothing here logs or raises with a URL, UID or token: errors name the operation and the
HTTP status only.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import requests

from phiscrub.errors import ConfigError, CorruptFile, StorageError, TransientError
from phiscrub.pipeline.storage import Item, register_scheme

log = logging.getLogger(__name__)

TOKEN_ENV = "PHISCRUB_DICOMWEB_TOKEN"
TOKEN_FILE_ENV = "PHISCRUB_DICOMWEB_TOKEN_FILE"
DICOM_JSON = "application/dicom+json"
# transfer-syntax=*: the instance as stored; without it a server may transcode (decompress)
WADO_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_PATH = re.compile(r"^(?P<base>.*?)/studies(?:/(?P<study>[^/]+)(?:/series/(?P<series>[^/]+)"
                   r"(?:/instances/(?P<sop>[^/]+))?)?)?/?$")
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
_TRANSIENT_STATUS = {408, 425, 429}


def _split(uri: str) -> tuple[str, dict[str, str | None], dict[str, str]]:
    """'dicomweb+https://h/b/studies/S?q' -> ('https://h/b', {'study': 'S', ...}, {'q': ...})."""
    scheme, _, rest = uri.partition("+")
    if scheme.lower() != "dicomweb" or not rest.lower().startswith(("http://", "https://")):
        raise ConfigError("a DICOMweb location is dicomweb+http(s)://HOST/PATH")
    parts = urlsplit(rest)
    path = parts.path.rstrip("/")
    where: dict[str, str | None] = {"study": None, "series": None, "sop": None}
    m = _PATH.match(path)
    if m:
        path = m.group("base")
        where = {k: m.group(k) for k in where}
    base = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
    return base, where, dict(parse_qsl(parts.query, keep_blank_values=True))


def _uid_of(obj: Mapping, tag: str) -> str:
    try:
        return str(obj[tag]["Value"][0])
    except (KeyError, IndexError, TypeError):
        raise CorruptFile("DICOMweb: a QIDO-RS result lacks a UID") from None


class _Client:
    """One store: a requests session per thread (a Dask worker runs tasks in threads),
    the bearer token, and the mapping of failures to typed errors. Picklable: sessions are
    made where they are used."""

    def __init__(self, base: str, token: str | None = None, token_file: str | None = None, timeout: float = 120.0):
        self.base = base
        self._token = token
        self._token_file = token_file
        self.timeout = timeout
        self._local = threading.local()

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_local")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _from_file(self) -> bool:
        return not (self._token or os.environ.get(TOKEN_ENV)) and bool(self._token_file or os.environ.get(TOKEN_FILE_ENV))

    def _auth(self, reload: bool = False) -> dict[str, str]:
        token = self._token or os.environ.get(TOKEN_ENV)
        path = self._token_file or os.environ.get(TOKEN_FILE_ENV)
        if not token and path:  # a `gcloud auth print-access-token > file` that is renewed beside us
            cached = getattr(self._local, "file_token", None)
            if reload or cached is None or time.monotonic() - cached[1] > 60:
                try:
                    with open(path, encoding="utf-8") as f:
                        cached = (f.read().strip(), time.monotonic())
                except OSError:
                    raise ConfigError(f"cannot read the DICOMweb token file (set {TOKEN_FILE_ENV})") from None
                self._local.file_token = cached
            token = cached[0]
        return {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, op: str, method: str, url: str, *, ok404: bool = False, ok409: bool = False,
                **kw) -> requests.Response | None:
        headers = dict(kw.pop("headers", {}))
        for attempt in (0, 1):
            try:
                r = self._session().request(method, url, headers={**headers, **self._auth(attempt > 0)},
                                            timeout=self.timeout, **kw)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as e:
                raise TransientError(f"DICOMweb {op}: connection failed ({type(e).__name__})") from None
            except requests.RequestException as e:
                raise StorageError(f"DICOMweb {op}: request failed ({type(e).__name__})") from None
            if r.status_code == 401 and attempt == 0 and self._from_file():
                continue  # the token file may have been renewed since we read it
            break
        code = r.status_code
        if code == 404 and ok404:
            return None
        if code == 409 and ok409:  # STOW-RS: every instance failed; the body says why
            return r
        if code >= 500 or code in _TRANSIENT_STATUS:
            raise TransientError(f"DICOMweb {op}: HTTP {code}")
        if code >= 400:
            raise StorageError(f"DICOMweb {op}: HTTP {code}")
        return r

    def qido(self, path: str, params: Mapping[str, str], page_size: int) -> Iterator[dict]:
        """Every match, page by page (limit/offset). A page shorter than asked ends the
        listing unless the server warns it cut the page (Google caps limit and says so)."""
        offset = 0
        while True:
            q = {**params, "limit": str(page_size), "offset": str(offset)}
            r = self.request("QIDO-RS", "GET", self.base + path, params=q, ok404=True,
                             headers={"Accept": DICOM_JSON})
            if r is None or r.status_code == 204 or not r.content.strip():
                return
            try:
                page = r.json()
            except ValueError:
                raise CorruptFile("DICOMweb QIDO-RS: the answer is not DICOM JSON") from None
            if not isinstance(page, list):
                raise CorruptFile("DICOMweb QIDO-RS: the answer is not a list")
            yield from page
            if not page or (len(page) < page_size and "Warning" not in r.headers):
                return
            offset += len(page)


class DicomwebSource:
    """Items are instances, in UID order (study, series, instance). Item.uri is the
    instance's WADO-RS URL under the dicomweb+ scheme (so it opens as a source on its own),
    version its SOPInstanceUID, study its StudyInstanceUID; size is 0 because QIDO does not
    tell it (an instance UID names immutable content in DICOM, so UID + policy suffice for
    resume)."""

    def __init__(self, uri: str, studies: Iterable[str] | None = None, query: str | Mapping[str, str] | None = None,
                 token: str | None = None, token_file: str | None = None, page_size: int = 1000,
                 timeout: float = 120.0):
        base, self._where, params = _split(uri)
        if isinstance(query, str):
            params.update(parse_qsl(query.lstrip("?"), keep_blank_values=True))
        elif query:
            params.update(query)
        listed = [u for u in re.split(r"[,\\]", params.pop("StudyInstanceUID", "")) if u]
        listed += [str(u) for u in studies or ()]
        for uid in listed + [v for v in self._where.values() if v]:
            if not _UID.match(uid):
                raise ConfigError("a study, series or instance UID holds characters other than digits and dots")
        self._studies = sorted(set(listed))
        self._params = params
        self.page_size = page_size
        self.client = _Client(base, token, token_file, timeout)
        self.missing_studies = 0

    def _study_uids(self) -> list[str]:
        if self._where["study"]:
            return [self._where["study"]]
        if not self._studies:
            return sorted({_uid_of(s, STUDY_UID) for s in self.client.qido("/studies", self._params, self.page_size)})
        found = []
        for uid in self._studies:
            if any(True for _ in self.client.qido("/studies", {**self._params, "StudyInstanceUID": uid}, 1)):
                found.append(uid)
        self.missing_studies = len(self._studies) - len(found)
        if self.missing_studies:
            log.warning("%d listed studies not found in the store (or not matching the query)", self.missing_studies)
        return found

    def items(self) -> Iterator[Item]:
        for study in self._study_uids():
            if self._where["series"]:
                series_uids = [self._where["series"]]
            else:
                series_uids = sorted({_uid_of(s, SERIES_UID)
                                      for s in self.client.qido(f"/studies/{study}/series", {}, self.page_size)})
            for series in series_uids:
                if self._where["sop"]:
                    sops = [self._where["sop"]]
                else:
                    path = f"/studies/{study}/series/{series}/instances"
                    sops = sorted({_uid_of(i, SOP_UID) for i in self.client.qido(path, {}, self.page_size)})
                for sop in sops:
                    url = f"{self.client.base}/studies/{study}/series/{series}/instances/{sop}"
                    yield Item("dicomweb+" + url, 0, sop, study)

    def read(self, item: Item) -> bytes:
        held = getattr(self.client._local, "held", None)
        if held is not None and held[0] == item.uri:
            self.client._local.held = None
            return held[1]
        return self.read_uri(self.client, item.uri)

    def head(self, item: Item, n: int) -> bytes:
        """The runner sniffs the first bytes before it reads; WADO-RS has no byte ranges, so
        the whole instance is fetched once and kept (one per thread) for the read that follows."""
        data = self.read_uri(self.client, item.uri)
        self.client._local.held = (item.uri, data)
        return data[:n]

    @staticmethod
    def read_uri(client: _Client, uri: str) -> bytes:
        url = uri.partition("+")[2] if uri.startswith("dicomweb+") else uri
        r = client.request("WADO-RS", "GET", url, headers={"Accept": WADO_ACCEPT})
        assert r is not None
        parts = multipart_parts(r.content, r.headers.get("Content-Type", ""))
        if len(parts) != 1:
            raise CorruptFile(f"DICOMweb WADO-RS: {len(parts)} parts where one instance was asked for")
        return parts[0]

    def local_path(self, item: Item) -> str | None:
        return None


class DicomwebSink:
    """One STOW-RS request per instance: the store keeps it whole or not at all, and a
    refusal is that instance's alone. Outputs are addressed by their UIDs, so ``relpath``
    (<patient>/<study>/<series>/<sop>.dcm) serves only ``exists``."""

    def __init__(self, uri: str, token: str | None = None, token_file: str | None = None, timeout: float = 300.0,
                 durable: bool = False):
        # durable: accepted for the runner's sake; a STOW-RS success already means stored
        base, where, params = _split(uri)
        if any(where.values()) or params:
            raise ConfigError("a DICOMweb destination is the store's root URL, without /studies or a query")
        self.client = _Client(base, token, token_file, timeout)

    def write(self, relpath: str, data: bytes) -> str:
        study, series, sop = _uids_of_instance(data)
        boundary = _boundary(data)
        body = b"".join((b"--", boundary, b"\r\nContent-Type: application/dicom\r\n\r\n", data,
                         b"\r\n--", boundary, b"--\r\n"))
        ctype = f'multipart/related; type="application/dicom"; boundary={boundary.decode()}'
        r = self.client.request("STOW-RS", "POST", self.client.base + "/studies", data=body, ok409=True,
                                headers={"Content-Type": ctype, "Accept": DICOM_JSON})
        assert r is not None
        uri = f"dicomweb+{self.client.base}/studies/{study}/series/{series}/instances/{sop}"
        try:
            _check_stow(r)
        except (StorageError, TransientError) as refused:
            # a write retried after a crash finds its instance already there: stores that
            # refuse duplicates (409) succeed it only if what they hold is byte for byte ours
            held = self._held(uri)
            if held == data:
                return uri
            if held is not None and isinstance(refused, StorageError):
                raise StorageError("DICOMweb STOW-RS: the store holds a different instance under this UID") from None
            raise
        return uri

    def _held(self, uri: str) -> bytes | None:
        try:
            return DicomwebSource.read_uri(self.client, uri)
        except (StorageError, TransientError, CorruptFile):
            return None

    def exists(self, relpath: str) -> bool:
        parts = relpath.strip("/").split("/")
        if len(parts) != 4 or not parts[3].endswith(".dcm"):
            return False
        study, series, sop = parts[1], parts[2], parts[3][:-4]
        if not all(_UID.match(u) for u in (study, series, sop)):
            return False
        path = f"/studies/{study}/series/{series}/instances"
        return any(_uid_of(i, SOP_UID) == sop for i in self.client.qido(path, {"SOPInstanceUID": sop}, 10))


def _uids_of_instance(data: bytes) -> tuple[str, str, str]:
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        ds = dcmread(io.BytesIO(data), stop_before_pixels=True,
                     specific_tags=["StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"])
        uids = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    except (InvalidDicomError, AttributeError, ValueError, EOFError):
        raise CorruptFile("DICOMweb STOW-RS: the output lacks its study, series or instance UID") from None
    if not all(_UID.match(u) for u in uids):
        raise CorruptFile("DICOMweb STOW-RS: the output's UIDs are not plain UIDs")
    return uids


def _boundary(data: bytes) -> bytes:
    """Derived from the content (deterministic) and checked not to occur in it."""
    seed = hashlib.sha256(data).hexdigest()
    for i in range(8):
        b = f"phiscrub-{i}-{seed[:40]}".encode()
        if b not in data:
            return b
    raise CorruptFile("DICOMweb STOW-RS: no multipart boundary fits this instance")


def _check_stow(r: requests.Response) -> None:
    """200 with no FailedSOPSequence is stored; a failed entry (202/409 or inside 200)
    refuses this instance, with the standard's failure reason code (a number, never a value)."""
    try:
        answer = r.json() if r.content.strip() else {}
    except ValueError:
        answer = {}
    failed = (answer or {}).get("00081198", {}).get("Value") if isinstance(answer, dict) else None
    if failed:
        code = failed[0].get("00081197", {}).get("Value", ["?"])[0] if isinstance(failed[0], dict) else "?"
        try:
            code = f"0x{int(code):04X}"
        except (TypeError, ValueError):
            code = "unknown"
        if code in ("0xA700", "0x0110", "0x0212", "0x0213"):  # out of resources / processing failure
            raise TransientError(f"DICOMweb STOW-RS: instance not stored (failure reason {code})")
        raise StorageError(f"DICOMweb STOW-RS: instance refused (failure reason {code})")
    if r.status_code in (202, 409):
        raise StorageError(f"DICOMweb STOW-RS: instance not stored (HTTP {r.status_code} without details)")


def multipart_parts(body: bytes, content_type: str) -> list[bytes]:
    """The bodies of a multipart/related answer. By hand because the stdlib email parser
    copies and re-decodes every part and requests has no multipart reader; a WADO-RS
    answer is plain binary parts."""
    m = re.search(r'boundary="?([^";,\s]+)"?', content_type, re.IGNORECASE)
    if not content_type.lower().startswith("multipart/") or not m:
        raise CorruptFile("DICOMweb WADO-RS: the answer is not multipart/related")
    delim = b"--" + m.group(1).encode("latin-1")
    out: list[bytes] = []
    pos = body.find(delim)
    if pos < 0:
        raise CorruptFile("DICOMweb WADO-RS: the multipart answer has no parts")
    while True:
        pos += len(delim)
        if body[pos:pos + 2] == b"--":
            return out
        head_end = body.find(b"\r\n\r\n", pos)
        if head_end < 0:
            raise CorruptFile("DICOMweb WADO-RS: a multipart part is truncated")
        start = head_end + 4
        nxt = body.find(b"\r\n" + delim, start)
        if nxt < 0:
            raise CorruptFile("DICOMweb WADO-RS: a multipart part is truncated")
        out.append(body[start:nxt])
        pos = nxt + 2


register_scheme("dicomweb+http", source=DicomwebSource, sink=DicomwebSink)
register_scheme("dicomweb+https", source=DicomwebSource, sink=DicomwebSink)
