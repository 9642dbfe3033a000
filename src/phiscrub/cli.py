"""Command line: init, deidentify, inspect, demo.

Exit codes: 0 everything done; 1 some files failed or were quarantined, or the source held
no input file; 2 usage error.
The console may name an input file to its operator; nothing written under the output
folder does (audit records carry a keyed hash of the source path instead).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from phiscrub import __version__
from phiscrub.cli_guards import GuardError, check_deidentify, make_folder, open_state
from phiscrub.errors import ConfigError, KeyMissing, PhiscrubError
from phiscrub.keys import KEY_ENV, generate_key_file, load_key

app = typer.Typer(add_completion=False, no_args_is_help=True, help="De-identify medical images.")
err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config, or a Google DeidentifyConfig JSON.")]
KeyFileOpt = Annotated[Optional[Path], typer.Option("--key-file", help=f"Key file (else ${KEY_ENV}).")]


def installed_version() -> str:
    """The installed distribution's version (what pip reports), else the source tree's."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("phiscrub")
    except PackageNotFoundError:
        return __version__


def _print_version(value: bool) -> None:
    if value:
        out.print(f"phiscrub {installed_version()}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    # no docstring: it would replace the app's help text; --version acts in its callback
    _ = version


def _usage(msg: str) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(msg)}")  # a message is text, never markup: '[cloud]' must show
    return typer.Exit(2)


def _load(config: Path | None):
    from phiscrub.policy import load_config

    try:
        return load_config(config)
    except ConfigError as e:
        raise _usage(str(e)) from None


@app.command()
def init(
    folder: Annotated[Path, typer.Argument(metavar="DIR", help="Folder for phiscrub.yaml and phiscrub.key (made if missing).")],
) -> None:
    """Start here: write DIR/phiscrub.yaml (the default policy, every key commented) and
    DIR/phiscrub.key (a new key, mode 0600). Never overwrites: exit 1 if either exists."""
    import shlex

    from phiscrub.cli_guards import GuardError, make_folder

    config, key = folder / "phiscrub.yaml", folder / "phiscrub.key"
    for path in (config, key):
        if path.exists() or path.is_symlink():  # a key overwritten is every earlier pseudonym orphaned
            err.print(f"[red]error:[/red] {path} already exists; init does not overwrite (remove it or pick another DIR)")
            raise typer.Exit(1)
    try:
        make_folder(folder, "DIR")
        generate_key_file(key)  # O_EXCL: a key that appeared meanwhile is refused, not replaced
        with open(config, "x", encoding="utf-8") as fh:
            fh.write(default_config_text())
    except GuardError as e:
        err.print(f"[red]error:[/red] {e}")
        raise typer.Exit(1) from None
    except FileExistsError as e:
        err.print(f"[red]error:[/red] {e.filename} already exists; init does not overwrite")
        raise typer.Exit(1) from None
    err.print(f"wrote {config} (the default policy: edit it, then check a file with `phiscrub inspect FILE -c {config}`)")
    err.print(f"wrote {key} (mode 0600): keep it secret and keep it safe; the same key gives the same pseudonyms next time")
    c, k = shlex.quote(str(config)), shlex.quote(str(key))
    out.print("next:")
    for line in (f"phiscrub deidentify SRC DST --config {c} --key-file {k}",
                 f"phiscrub verify SRC DST --config {c} --key-file {k}",
                 "phiscrub report DST"):
        out.print(f"  {line}", markup=False, highlight=False)


def default_config_text() -> str:
    """The config `init` writes: every top-level key at its default, each with a line that
    says what it does. Values come from the loader's own defaults (from_mapping({})), so
    the file loads to the same policy and digest as no config at all."""
    from phiscrub.policy.config import DEFAULT_OPTIONS, from_mapping

    cfg = from_mapping({})
    pol, px, wsi = cfg.policy, cfg.pixels, cfg.wsi
    j = json.dumps  # JSON scalars and lists are YAML flow values
    return f"""\
# phiscrub configuration, written by `phiscrub init` (phiscrub {installed_version()}).
# Every top-level key is here at its default value; a key left out takes its default.
# Any change changes the policy hash that every output and the audit log record.
# See what a file would get: phiscrub inspect FILE --config THIS_FILE

# PS3.15 Annex E profile: basic, minimal, keep_all or deidentify_tag_contents.
profile: {j(pol.profile)}
# Annex E options; a list here replaces this default (without clean_pixel_data, burned-in text is released as it is).
options: {j([o.value for o in DEFAULT_OPTIONS])}
# Per-attribute overrides, first match wins, e.g. [{{select: PatientAge, action: keep}}] (docs/configuration.md lists the actions).
tags: []
# Each patient's dates move by one keyed offset in this range of days (never 0).
date_shift: {{min_days: {pol.date_shift_min}, max_days: {pol.date_shift_max}}}
# Patient's Name and ID become keyed pseudonyms instead of empty values.
pseudonymize_patient: {j(pol.pseudonymize_patient)}
# Free text: what replaces an identifying word, and extra regular expressions to treat as identifying.
text: {{marker: {j(pol.text_marker)}, patterns: []}}
# Worker processes, 0: one per core (deidentify --workers overrides it).
workers: {cfg.workers}
# Burned-in text in the pixels (under clean_pixel_data); docs/configuration.md lists every key of this section.
pixels:
  text_redaction: {j(px.text_redaction)}  # auto, sensitive, all or none (auto: OCR where text is known to be, screen the rest)
  modalities: {j(list(px.modalities))}  # what auto takes as carrying text
  screen: {j(px.screen)}  # under auto, one quick detector pass over every other image
  threshold: {px.threshold}  # how close an OCR word must come to a header value to count as it
  fill: {j(px.fill)}  # what covers a redacted box: background, min, max or a number
# Whole-slide images: their label and macro (overview) images, and OCR of the tiles.
wsi:
  label: {j(wsi.label)}  # remove, blank or replace (a generated label showing the pseudonym)
  macro: {j(wsi.macro)}  # remove, blank, replace or redact (the label end blanked)
  tile_scan: {j(wsi.tile_scan)}  # OCR the smallest pyramid levels for burned-in text
  annotation_text: {j(wsi.annotation_text)}  # annotation free text: vocabulary, clean or remove
# Exported audit records (phiscrub audit export): days they are kept where they are sent.
audit: {{retention_days: {cfg.audit_retention_days}}}
"""


@app.command()
def deidentify(
    src_uri: Annotated[str, typer.Argument(metavar="SRC", help="Input file or folder, gs://, s3:// or dicomweb+https:// URI.")],
    dst_uri: Annotated[str, typer.Argument(metavar="DST", help="Output folder, gs://, s3:// or dicomweb+https:// URI.")],
    config: ConfigOpt = None,
    key_file: KeyFileOpt = None,
    generate_key: Annotated[Optional[Path], typer.Option("--generate-key", help="Write a new key file (0600) here and use it.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="Worker processes, 0: one per core."
                                                   " Default: the config's 'workers' (0 unless it sets one).")] = None,
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help="Copy originals that fail here (outside DST).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="Ignore the saved job state; redo every item.")] = False,
    in_place: Annotated[bool, typer.Option("--in-place", help="Slides: rewrite the source itself (journalled, crash-safe) and move it to DST under its keyed name; DST must be on the same filesystem.")] = False,  # noqa: E501
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Run on a Dask cluster (tcp://HOST:PORT) instead of local processes.")] = None,  # noqa: E501
    studies: Annotated[Optional[Path], typer.Option("--studies", help="File of StudyInstanceUIDs, one a line: only items of these studies.")] = None,  # noqa: E501
    state_opt: Annotated[Optional[Path], typer.Option("--state", help="Folder for job state and audit (default: DST/.phiscrub; required for a DST that is not a folder).")] = None,  # noqa: E501
    broker_key: Annotated[Optional[Path], typer.Option("--broker-key", help="Honest broker (off by default): encrypt a map of original IDs to pseudonyms under DST/.phiscrub with this key (else $PHISCRUB_BROKER_KEY); never the pseudonym key.")] = None,  # noqa: E501
) -> None:
    """De-identify SRC into DST: DST/<patient pseudonym>/<study UID>/<series UID>/<SOP UID>.dcm.

    Exit codes: 0 all done (a DICOMDIR media index is dropped, not failed); 1 some file failed
    or was quarantined, or SRC holds no input file (most likely a wrong path); 2 usage error.
    """
    from phiscrub.pipeline.audit import AuditLog, item_record
    from phiscrub.pipeline.phi_categories import pixel_fate
    from phiscrub.pipeline.runner import MEDIA_INDEX, MEDIA_INDEX_NOTE, Job, default_workers, run
    from phiscrub.pipeline.storage import scheme_of

    local_src, local_dst = scheme_of(src_uri) == "file", scheme_of(dst_uri) == "file"
    src, dst = Path(src_uri), Path(dst_uri)
    if local_src and not src.exists():
        raise _usage(f"{src}: no such file or folder")
    if in_place and not (local_src and local_dst):
        raise _usage("--in-place needs a local SRC and DST")
    try:
        check_deidentify(src_uri, dst_uri, key_file=key_file, generate_key=generate_key, quarantine=quarantine, state=state_opt)
    except GuardError as e:
        raise _usage(str(e)) from None
    cfg = _load(config)
    for note in cfg.notes:  # about the policy, never about a file: no value to leak
        err.print(f"[yellow]note:[/yellow] {note}")
    if generate_key is not None:
        try:
            key_file = generate_key_file(generate_key)
        except FileExistsError:
            raise _usage(f"{generate_key}: already exists; not overwriting a key") from None
        err.print(f"new key written to {key_file} (mode 0600): keep it secret and keep it safe;"
                  " the same key gives the same pseudonyms next time")
    try:
        keys = load_key(key_file)
    except KeyMissing as e:
        raise _usage(str(e)) from None
    if local_dst:
        dst = dst.resolve()
        if quarantine is not None:
            quarantine = quarantine.resolve()
        try:
            make_folder(dst, "DST")
        except GuardError as e:
            raise _usage(str(e)) from None
    elif state_opt is None:
        raise _usage("--state FOLDER is needed when DST is not a folder (job state and audit are local files)")
    elif quarantine is not None:
        quarantine = quarantine.resolve()
    wanted = _study_list(studies)
    policy_hash = cfg.policy.digest()
    plugins = tuple(m for m in os.environ.get("PHISCRUB_PLUGINS", "").split(",") if m)
    src_uri = os.path.abspath(src) if local_src else src_uri
    job = Job(cfg, keys, policy_hash, dst if local_dst else dst_uri, quarantine, in_place=in_place,
              src=src_uri, studies=wanted, plugins=plugins)
    n_workers = workers if workers is not None else cfg.workers
    n_workers = n_workers or default_workers()
    sdir = state_opt.resolve() if state_opt is not None else dst / ".phiscrub"
    try:
        state = open_state(sdir, keys, "--state" if state_opt is not None else "state folder")  # refuses another key
    except GuardError as e:
        raise _usage(str(e)) from None
    started = time.perf_counter()
    found, sink = _discover(job, wanted)
    if not found:  # nothing to do is most likely a wrong path: say so, and fail for scripts
        which = " of the selected studies" if wanted is not None else ""
        err.print(f"[red]error:[/red] no input files{which} found in {src_uri}")
        state.close()
        raise typer.Exit(1)
    plan = _prepass(found, job, state, sink, restart, wanted, n_workers, scheduler, quiet)
    items, item_keys, skipped, excluded = plan.tasks, plan.item_keys, plan.skipped, plan.excluded
    state.mark_pending(list(item_keys.values()))
    if skipped:
        err.print(f"resuming: {skipped} item(s) already done in an earlier run are skipped")
    broker = _broker(broker_key, keys, sdir)
    if broker is not None:  # workers capture the original IDs beside the pseudonyms they write
        job = dataclasses.replace(job, broker=True)
    audit = AuditLog(sdir / "audit.jsonl", keys)
    audit.append("run-start", version=__version__, policy=policy_hash,
                 profile=cfg.policy.profile, options=sorted(o.value for o in cfg.policy.options),
                 items=len(items), skipped=skipped, source=keys.hash_hex("src:" + src_uri))
    audit.append("prepass", **plan.stats)  # counts only: the index's values never leave memory
    counts: Counter[str] = Counter()  # by status, and MEDIA_INDEX: DICOMDIRs among the dropped (not the policy's doing)
    pixel_counts: Counter[str] = Counter()  # what clean_pixel_data did per image: scanned or left alone
    progress = Progress(TextColumn("[bold]de-identifying"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[bad]} failed"), TimeRemainingColumn(),
                        console=err, disable=quiet or not err.is_terminal, transient=False)

    with progress:
        task = progress.add_task("run", total=len(items), bad=0)

        def on_result(r) -> None:
            counts[r.status] += 1
            if r.status == "dropped" and r.category == MEDIA_INDEX:
                counts[MEDIA_INDEX] += 1
            pixel_counts[pixel_fate(r.manifest if r.status == "done" else None)] += 1
            if r.status == "excluded":  # another study: neither state nor audit, only counted
                progress.update(task, advance=1)
                return
            if r.status not in ("done", "dropped", "duplicate"):
                # one line per failed file, naming the file and the reason, never a value in it
                progress.console.print(f"[yellow]{r.status}:[/yellow] {r.source}: {r.reason}",
                                       markup=True, highlight=False)
            audit.append("item", **item_record(r, policy_hash=policy_hash, version=__version__,
                                               at_s=time.perf_counter() - started))
            if item_keys.get(r.source):  # after the audit record: a kill between the two repeats a record, never loses one
                state.record(item_keys[r.source], r.status, r.relpath, r.category, getattr(r, "attempts", 1),
                             plan.digests.get(r.source, ""))
            if broker is not None:  # original IDs travel only into the encrypted map
                broker.add_result(r)
            progress.update(task, advance=1, bad=counts["failed"] + counts["quarantined"])

        if local_dst:
            sink.sweep_partials()  # hidden temporary files of a killed earlier run
        run(items, job, n_workers, on_result, scheduler=scheduler)
    state.close()  # flushes the outputs to disk before it commits the rows that call them done
    if broker is not None:
        broker.close()
        audit.append("broker-map", pairs_added=broker.added)
    elapsed = time.perf_counter() - started
    audit.append("run-end", done=counts["done"], dropped=counts["dropped"], failed=counts["failed"], skipped=skipped,
                 quarantined=counts["quarantined"], duplicates=counts["duplicate"], seconds=round(elapsed, 3),
                 pixels_scanned=pixel_counts["scanned"], pixels_screened=pixel_counts["screened"],
                 pixels_left_alone=pixel_counts["left alone"], media_indexes_dropped=counts[MEDIA_INDEX])
    audit.close()
    summary = {"done": counts["done"], "dropped": counts["dropped"], "duplicates": counts["duplicate"], "skipped": skipped,
               "failed": counts["failed"], "quarantined": counts["quarantined"], "seconds": round(elapsed, 3),
               "pixels_scanned": pixel_counts["scanned"], "pixels_screened": pixel_counts["screened"],
               "pixels_left_alone": pixel_counts["left alone"], "media_indexes_dropped": counts[MEDIA_INDEX]}
    (sdir / "last-run.json").write_text(json.dumps(summary, indent=1) + "\n")
    excluded += counts["excluded"]
    if wanted is not None:
        err.print(f"{excluded} item(s) of other studies not selected")
    media_indexes = counts[MEDIA_INDEX]
    by_policy = counts["dropped"] - media_indexes
    dropped = f", {by_policy} dropped by policy" if by_policy else ""
    if media_indexes:
        dropped += f", {media_indexes} DICOMDIR dropped"
    if counts["duplicate"]:  # identical copies of another file: one output serves them all
        dropped += f", {counts['duplicate']} duplicate(s)"
    err.print(f"{counts['done']} done{dropped}, {counts['quarantined']} quarantined, {counts['failed']} failed"
              f" in {elapsed:.1f}s{pace(len(items), elapsed)}; audit: {sdir / 'audit.jsonl'}")
    if media_indexes:
        err.print(f"[yellow]note:[/yellow] {MEDIA_INDEX_NOTE}")
    if pixel_counts["scanned"] or pixel_counts["screened"] or pixel_counts["left alone"]:
        auto = cfg.pixels.text_redaction == "auto"
        screened = (f", {pixel_counts['screened']} screened and found clear (no sign of text in the header or in a quick"
                    " look at the pixels)") if pixel_counts["screened"] else ""
        alone = ""
        if pixel_counts["left alone"]:
            why = ("their header gives no sign of burned-in text and pixels.screen is off" if auto
                   else f"pixels.text_redaction: {cfg.pixels.text_redaction}")
            alone = f", {pixel_counts['left alone']} left alone ({why})"
        hint = "; pixels.text_redaction: sensitive scans every image" if auto and (screened or alone) else ""
        err.print(f"burned-in text: {pixel_counts['scanned']} image(s) scanned{screened}{alone}{hint}")
    if counts["failed"] or counts["quarantined"]:
        raise typer.Exit(1)


def pace(n: int, seconds: float) -> str:
    """' (N files/s)', or seconds per file when a file takes longer than a second (slides,
    OCR): '0 files/s' tells a waiting operator nothing. Empty when nothing was processed."""
    if n <= 0 or seconds <= 0:
        return ""
    rate = n / seconds
    if rate >= 1:
        return f" ({rate:.0f} files/s)"
    return f" ({seconds / n:.1f} s/file)"


def _study_list(path: Path | None) -> frozenset[str] | None:
    from phiscrub.pipeline.select import read_study_list

    if path is None:
        return None
    try:
        return read_study_list(path)
    except OSError as e:
        raise _usage(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise _usage(str(e)) from None


def _discover(job, wanted: frozenset[str] | None):
    """The items the source lists, and the sink. Item URIs stay in this process's memory
    and on the console; the state holds their keyed hashes."""
    from phiscrub.pipeline.storage import load_plugins, open_sink, open_source

    opts = {"studies": sorted(wanted)} if wanted is not None else {}  # a store that can query by study does
    try:
        load_plugins(job.plugins)
        source = open_source(job.src, **opts)
        sink = open_sink(str(job.dst), durable=job.durable)
        found = list(source.items())
    except PhiscrubError as e:
        raise _usage(str(e)) from None
    except (OSError, ValueError, ImportError) as e:
        raise _usage(f"cannot open the source or destination ({type(e).__name__}: {getattr(e, 'strerror', None) or e})") from None
    return found, sink


PREPASS_INLINE = 16  # items up to which the pre-pass reads headers in this process


def _prepass(found, job, state, sink, restart: bool, wanted, workers: int, scheduler: str | None, quiet: bool):
    """Reads every header before any item is transformed (pipeline/prepass.py), with its own
    progress bar, then plans the run: duplicates, study terms, what a resume skips."""
    from phiscrub.pipeline import prepass
    from phiscrub.pipeline.planning import plan_job
    from phiscrub.pipeline.runner import run

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=err, disable=quiet or not err.is_terminal, transient=True)
    with progress:
        def run_work(elements, work, on_crash, on_result) -> None:
            task = progress.add_task("reading headers" if work is prepass.read_header else "checking copies",
                                     total=len(elements))

            def tick(r) -> None:
                on_result(r)
                progress.update(task, advance=1)

            # a few headers are read here: starting a pool costs more than reading them, and a
            # header read runs no native code that a pool would need to isolate
            few = scheduler is None and len(elements) <= PREPASS_INLINE
            run(elements, job, 1 if few else workers, tick, scheduler=scheduler, work=work, on_crash=on_crash)

        return plan_job(found, job, run_work, state.done_row, sink.exists, restart=restart, wanted=wanted)


def _broker(broker_key: Path | None, keys, sdir: Path):
    from phiscrub.pipeline.broker import BrokerMap, load_broker_key

    try:
        key = load_broker_key(broker_key, keys.secret)
    except KeyMissing as e:
        raise _usage(str(e)) from None
    return None if key is None else BrokerMap(sdir, key)


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="A DICOM file.")],
    config: ConfigOpt = None,
) -> None:
    """Dry run: what would be done to each attribute (names and actions, never values)."""
    from phiscrub.inspect import plan_rows

    cfg = _load(config)
    try:
        rows = plan_rows(file.read_bytes(), cfg)
    except OSError as e:
        raise _usage(f"{file}: cannot read ({e.strerror})") from None
    except PhiscrubError as e:
        err.print(f"{file}: {e}")
        raise typer.Exit(1) from None
    table = Table(title=f"phiscrub {__version__}: {cfg.policy.profile} profile, "
                  f"options: {', '.join(sorted(o.value for o in cfg.policy.options)) or 'none'}")
    for col in ("tag", "name", "VR", "action", "why"):
        table.add_column(col, no_wrap=True, overflow="ellipsis" if col == "name" else "fold")
    for r in rows:
        table.add_row(*r)
    wide = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    wide.print(table)


@app.command()
def demo(
    workdir: Annotated[Path, typer.Argument(help="Folder for the demo input, output and key.")] = Path("phiscrub-demo"),
) -> None:
    """Generate a synthetic study with planted PHI, de-identify it, and scan for leaks."""
    import os

    from phiscrub.demo import make_study

    workdir = workdir.resolve()
    src, dst = workdir / "input", workdir / "output"
    planted, paths = make_study(src)
    key = workdir / "demo.key"
    if not key.exists():
        generate_key_file(key)
    err.print(f"demo input: {len(paths)} files with planted PHI under {src}")
    argv = ["deidentify", str(src), str(dst), "--key-file", str(key), "--quiet"]
    try:
        app(argv, standalone_mode=False)
    except typer.Exit as e:
        if e.exit_code:
            raise
    leaks = 0
    files = [p for p in dst.rglob("*") if p.is_file()]
    needles = {v.lower().encode() for v in planted.values if len(v) >= 4}
    for f in files:
        blob = (str(f.relative_to(dst)).lower().encode()) + b"\n" + f.read_bytes().lower()
        leaks += sum(1 for n in needles if n in blob)
    err.print(f"scanned {len(files)} output files (DICOM, audit, state) and their paths for "
              f"{len(needles)} planted values: {leaks} found")
    for f in sorted(p for p in files if p.suffix == ".dcm")[:3]:
        out.print(f"  {f.relative_to(dst)}")
    err.print(f"try: phiscrub inspect {paths[0]}")
    if leaks:
        raise typer.Exit(1)
    _ = os


import phiscrub.cli_gateway  # noqa: E402,F401  (gateway: the DICOM C-STORE node)
import phiscrub.cli_service  # noqa: E402,F401  (serve: the HTTP service)
from phiscrub import cli_jobs  # noqa: E402,F401  (verify, audit, report, broker commands)


def main() -> None:
    try:
        app()
    except PhiscrubError as e:
        err.print(f"error: {escape(str(e))}")
        sys.exit(2)
