"""Job selection by study: the StudyInstanceUID from the least of a header that holds it.

pydicom stops at the pixel data and keeps only the one tag, so a selected-out instance
costs a header read, not a decode; from an object store the file object is block-buffered,
so only the first blocks travel.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import IO

_UID = re.compile(r"^[0-9.]{1,64}$")


def study_uid(src: str | Path | IO[bytes]) -> str | None:
    """The StudyInstanceUID, or None for a file that is not DICOM or names no study."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(src, stop_before_pixels=True, specific_tags=[0x0020000D], force=False)
        uid = str(ds.get("StudyInstanceUID", "") or "").strip()
    except (InvalidDicomError, EOFError, ValueError, TypeError, KeyError, AttributeError):
        return None
    finally:
        close = getattr(src, "close", None)
        if close is not None:
            close()
    return uid or None


def read_study_list(path: Path) -> frozenset[str]:
    """One StudyInstanceUID per line (blank lines and '#' comments skipped); a line that is
    not a UID is a usage error naming its line number, never its content."""
    uids = set()
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if not s:
            continue
        if not _UID.match(s):
            raise ValueError(f"{path.name}: line {n} is not a study instance UID")
        uids.add(s)
    return frozenset(uids)
