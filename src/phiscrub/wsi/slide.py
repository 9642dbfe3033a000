"""The one way in for a slide: detect, scrub to a temporary name, verify, publish.

Outputs are named only from a keyed token of the slide's content (never from the source
file name, which often holds a patient's name); a slide that fails verification is never
published and raises :class:`VerificationFailed` so the caller quarantines it. The opt-in
tile scan is part of the TIFF-family plan (:mod:`phiscrub.wsi.tile_scan`), so its re-encoded
tiles are written, journalled and verified with the rest.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from phiscrub.errors import UnsupportedInput, VerificationFailed
from phiscrub.wsi import registry
from phiscrub.wsi.registry import SlideFormat, SlideJob, SlideManifest

EXT = {"aperio": "svs", "hamamatsu": "ndpi", "leica": "scn", "ventana": "bif", "philips": "tiff",
       "ome": "ome.tiff", "generic_tiff": "tiff", "mrxs": "mrxs"}


def output_name(src: Path, fmt: SlideFormat, job: SlideJob) -> str:
    """<keyed token>.<ext>: the token is keyed on the slide's content identity."""
    from phiscrub.wsi.tiff import TiffSlide
    from phiscrub.wsi.tiffscrub import content_id

    mod = fmt.vendor
    if mod is None:  # not TIFF-based (MRXS): key on the first MiB of the file's bytes
        import hashlib

        with open(src, "rb") as fh:
            cid = hashlib.sha256(fh.read(1 << 20)).hexdigest()
    else:
        with TiffSlide(src) as t:
            cid = content_id(t, mod.levels(t))
    return f"{job.keys.token('slide', cid)}.{EXT.get(fmt.name, 'tiff')}"


def _publish_all(work: Path, dst_dir: Path, main: str) -> None:
    """Move everything the scrub wrote into ``dst_dir``: companions first, ``main`` last."""
    for entry in sorted(work.iterdir(), key=lambda p: (p.name == main, p.name)):
        if entry.name.startswith(".partial-"):
            continue
        target = dst_dir / entry.name
        if entry.is_dir() and target.exists():
            shutil.rmtree(target)  # a rerun's earlier copy of the same slide
        os.replace(entry, target)


def deidentify_slide(src: Path, dst_dir: Path, job: SlideJob) -> SlideManifest:
    src, dst_dir = Path(src), Path(dst_dir)
    fmt = registry.detect(src)
    if fmt is None:
        raise UnsupportedInput("not a slide format phiscrub knows")
    name = output_name(src, fmt, job)
    target = dst_dir / name
    dst_dir.mkdir(parents=True, exist_ok=True)
    if job.in_place:
        manifest = fmt.scrub(src, src, job)
        problems = fmt.verify(src, src, job)
        if problems:
            raise VerificationFailed("; ".join(problems))
        try:
            os.replace(src, target)  # the source name is PHI: the file takes its keyed name
        except OSError as e:
            raise UnsupportedInput(f"in-place output must be on the source's filesystem ({e.strerror})") from None
    else:
        # scrubbed into a hidden folder of its own, then moved out: a multi-file slide (an
        # MRXS .mrxs beside its data folder) is published whole, its data before its main file
        work = dst_dir / f".partial-{os.getpid()}-{name}.d"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            manifest = fmt.scrub(src, work / name, job)
            problems = fmt.verify(src, work / name, job)
            if problems:
                raise VerificationFailed("; ".join(problems))
            _publish_all(work, dst_dir, name)
        except OSError as e:
            raise UnsupportedInput(f"cannot write the slide ({e.strerror})") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if job.config.wsi.tile_scan and fmt.vendor is None:
        manifest.notes.append("tile scan: not available for this format; levels kept as they are")
    manifest.outputs = [name]
    return manifest
