"""A real Orthanc with its DICOMweb plugin (Debian packages orthanc, orthanc-dicomweb),
started on free ports with a throwaway storage folder and index, no authentication, and
reachable from this machine only (RemoteAccessAllowed false; the DICOM listener is off:
the tests speak DICOMweb and Orthanc's REST API only)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.pipeline.servers import free_port, stop_process, wait_ready


def dicomweb_plugin() -> str | None:
    """Where Debian put the plugin (dpkg -L), with the usual path as a fallback."""
    try:
        listing = subprocess.run(["dpkg", "-L", "orthanc-dicomweb"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        listing = ""
    for line in listing.splitlines():
        if line.endswith(".so") and "DicomWeb" in line and os.path.exists(line):
            return line
    fallback = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
    return fallback if os.path.exists(fallback) else None


def require_orthanc() -> tuple[str, str]:
    exe = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if os.path.exists("/usr/sbin/Orthanc") else None)
    plugin = dicomweb_plugin()
    if exe and plugin:
        return exe, plugin
    msg = "Orthanc with its DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@dataclass
class Orthanc:
    url: str  # REST root

    @property
    def dicomweb(self) -> str:
        return self.url + "/dicom-web"

    def upload(self, data: bytes) -> None:
        r = requests.post(self.url + "/instances", data=data, timeout=60)
        r.raise_for_status()

    def count(self) -> int:
        return len(requests.get(self.url + "/instances", timeout=60).json())


@contextlib.contextmanager
def running_orthanc(folder: Path) -> Iterator[Orthanc]:
    exe, plugin = require_orthanc()
    folder.mkdir(parents=True, exist_ok=True)
    http = free_port()
    config = {
        "Name": "phiscrub-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "HttpPort": http,
        "DicomPort": free_port(),
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "HttpThreadsCount": 8,
        "SaveJobs": False,
        "Plugins": [plugin],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{http}"},
    }
    cfg = folder / "orthanc.json"
    cfg.write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "wb")
    proc = subprocess.Popen([exe, str(cfg)], stdout=log, stderr=subprocess.STDOUT, cwd=folder)
    url = f"http://127.0.0.1:{http}"
    def answers() -> bool:
        try:
            return requests.get(url + "/system", timeout=2).ok
        except requests.RequestException:
            return False

    try:
        wait_ready(proc, answers, "Orthanc", 30, lambda: f": see {folder / 'orthanc.log'}")
        yield Orthanc(url)
    finally:
        stop_process(proc, 15)
        log.close()
