"""Where the gateway forwards de-identified instances: a DICOM node by C-STORE
(``dicom://AET@HOST:PORT``) or a DICOMweb store by STOW-RS (``dicomweb+http(s)://...``,
through the pipeline's DicomwebSink).

Both raise TransientError when trying again later may help (no association, a dropped
connection, the peer out of resources, HTTP 5xx/429) and StorageError when the peer
refused this instance for good. Messages hold AE titles and status codes, never a UID.

C-STORE sends the file's bytes as they are (pynetdicom's chunked send: the dataset is not
decoded and re-encoded), so what arrives is byte for byte what the verifier passed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from phiscrub.errors import ConfigError, StorageError, TransientError

_DICOM_URI = re.compile(r"^dicom://(?P<aet>[^@/]{1,16})@(?P<host>[^:/]+|\[[0-9a-fA-F:]+\]):(?P<port>\d{1,5})/?$")
_MAX_CONTEXTS = 120  # of the 128 a requestor may propose


class Destination(Protocol):
    def send(self, path: Path, relpath: str) -> None: ...

    def idle(self) -> None:
        """Nothing more to send for now: release what is held open."""
        ...

    def describe(self) -> str:
        """For logs: the AE title or the scheme, never a path or UID."""
        ...


def open_destination(uri: str, calling_aet: str, timeout: float = 30.0) -> Destination:
    m = _DICOM_URI.match(uri)
    if m:
        return CStoreDestination(m["aet"], m["host"].strip("[]"), int(m["port"]), calling_aet, timeout)
    if uri.lower().startswith(("dicomweb+http://", "dicomweb+https://")):
        return StowDestination(uri, timeout)
    raise ConfigError("--forward is dicom://AET@HOST:PORT or dicomweb+http(s)://HOST/PATH")


def no_delay(event) -> None:
    """TCP_NODELAY on an association's socket (pynetdicom leaves Nagle on): a C-STORE
    response otherwise waits out the peer's delayed ACK, about 40 ms an instance, which
    capped the gateway at under 20 instances/s on loopback; with it, about 120/s."""
    import socket

    try:
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (AttributeError, OSError):
        pass


class StowDestination:
    def __init__(self, uri: str, timeout: float) -> None:
        from phiscrub.pipeline.dicomweb import DicomwebSink

        self.sink = DicomwebSink(uri, timeout=timeout)

    def send(self, path: Path, relpath: str) -> None:
        import requests

        try:
            self.sink.write(relpath, path.read_bytes())
        except requests.RequestException as e:  # not mapped by the sink: a network error
            raise TransientError(f"DICOMweb STOW-RS: {type(e).__name__}") from None

    def idle(self) -> None:
        pass

    def describe(self) -> str:
        return "STOW-RS"


class CStoreDestination:
    """One association kept open while instances keep coming; its presentation contexts
    are those of the instances seen so far (a new SOP class or transfer syntax opens a new
    association that proposes it too)."""

    def __init__(self, called_aet: str, host: str, port: int, calling_aet: str, timeout: float) -> None:
        from pynetdicom import AE, _config

        _config.STORE_SEND_CHUNKED_DATASET = True  # send file bytes without decoding them
        self.called_aet, self.host, self.port = called_aet, host, port
        self.ae = AE(ae_title=calling_aet)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = timeout
        self.ae.connection_timeout = min(timeout, 10.0)
        self.contexts: set[tuple[str, str]] = set()
        self.assoc = None

    def describe(self) -> str:
        return f"C-STORE to {self.called_aet}"

    def _associate(self, ctx: tuple[str, str]) -> None:
        self.idle()
        self.contexts.add(ctx)
        if len(self.contexts) > _MAX_CONTEXTS:
            self.contexts = {ctx}
        self.ae.requested_contexts = []
        for sop_class, ts in sorted(self.contexts):
            self.ae.add_requested_context(sop_class, ts)
        from pynetdicom import evt

        assoc = self.ae.associate(self.host, self.port, ae_title=self.called_aet, evt_handlers=[(evt.EVT_CONN_OPEN, no_delay)])
        if not assoc.is_established:
            if assoc.is_rejected:
                # rejected-permanent (1) with a reason such as an unknown calling AE is a
                # configuration error, but one the operator fixes while the queue waits
                raise TransientError(f"C-STORE: association rejected by {self.called_aet}")
            raise TransientError(f"C-STORE: no association with {self.called_aet}")
        self.assoc = assoc

    def send(self, path: Path, relpath: str) -> None:
        from pydicom.filereader import read_file_meta_info

        try:
            meta = read_file_meta_info(path)
            ctx = (str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID))
        except (OSError, AttributeError, ValueError) as e:
            raise StorageError(f"C-STORE: the output's file meta cannot be read ({type(e).__name__})") from None
        if self.assoc is None or not self.assoc.is_established or ctx not in self.contexts:
            self._associate(ctx)
        assoc = self.assoc
        if not any(c.abstract_syntax == ctx[0] and ctx[1] in c.transfer_syntax for c in assoc.accepted_contexts):
            raise StorageError(f"C-STORE: {self.called_aet} does not accept this SOP class in this transfer syntax")
        try:
            status = assoc.send_c_store(path)
        except (OSError, RuntimeError) as e:
            self.idle()
            raise TransientError(f"C-STORE: connection to {self.called_aet} lost ({type(e).__name__})") from None
        code = getattr(status, "Status", None)
        if code is None:  # no response: aborted, timed out or the connection dropped
            self.idle()
            raise TransientError(f"C-STORE: no response from {self.called_aet}")
        code = int(code)
        if code == 0 or code in (0x0001, 0x0107, 0x0116) or 0xB000 <= code <= 0xBFFF:
            return  # success, or a warning (coercion, elements discarded): stored
        if 0xA700 <= code <= 0xA7FF:  # out of resources: may pass
            raise TransientError(f"C-STORE: {self.called_aet} is out of resources (0x{code:04X})")
        raise StorageError(f"C-STORE: {self.called_aet} refused the instance (0x{code:04X})")

    def idle(self) -> None:
        if self.assoc is not None:
            try:
                if self.assoc.is_established:
                    self.assoc.release()
            except (OSError, RuntimeError):
                pass
            self.assoc = None
