"""Commands over a finished job's destination: verify, audit verify/export, report, broker.

Kept out of cli.py so that the shared command module only gains an import line; these
commands read what a job wrote (outputs, audit log, job state) and write nothing under
DST except the report (in the state folder by default) and an audit record of each
broker lookup.

Exit codes as in cli.py: 0 clean, 1 problems found, 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from phiscrub.cli import ConfigOpt, KeyFileOpt, _load, _usage, app, err, out
from phiscrub.cli_guards import GuardError, check_folder
from phiscrub.errors import KeyMissing

BrokerKeyOpt = Annotated[Optional[Path], typer.Option("--broker-key", help="Honest-broker key file (else $PHISCRUB_BROKER_KEY).")]

audit_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Check or export a job's audit trail.")
broker_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Honest broker: re-identify with the broker key.")
app.add_typer(audit_app, name="audit")
app.add_typer(broker_app, name="broker")


def _keys(key_file: Path | None, required: bool = True):
    from phiscrub.keys import load_key

    try:
        return load_key(key_file)
    except KeyMissing as e:
        if required:
            raise _usage(str(e)) from None
        return None


def _state(dst: Path) -> Path:
    d = dst / ".phiscrub"
    if not (d / "audit.jsonl").is_file():
        raise _usage(f"{dst}: no job here (no .phiscrub/audit.jsonl)")
    return d


def _why(e: Exception) -> str:
    """An error's type and reason: a storage client's OSError may carry an object key (a
    source name) as its text, so only its strerror is shown."""
    why = e.strerror if isinstance(e, OSError) else str(e)
    return f"{type(e).__name__}: {why}" if why else type(e).__name__


StateOpt = Annotated[Optional[Path], typer.Option(
    "--state", help="The job's state folder (default DST/.phiscrub; required when DST is a bucket).")]


def _job_state(dst: str, state: Path | None) -> Path:
    """Where the job kept its audit log and state: --state, else DST/.phiscrub; a bucket
    DST has none of its own (deidentify required --state for it)."""
    from phiscrub.pipeline.storage import scheme_of
    from phiscrub.pipeline.trees import BUCKET_SCHEMES

    scheme = scheme_of(dst)
    if scheme != "file" and scheme not in BUCKET_SCHEMES:
        raise _usage(f"DST must be a folder or a gs://, s3:// URI, not {scheme}://")
    try:  # a file given for a folder: said as such, not as "no job here"
        if scheme == "file":
            check_folder(Path(dst), "DST")
        if state is not None:
            check_folder(state, "--state")
    except GuardError as e:
        raise _usage(str(e)) from None
    if state is None:
        if scheme != "file":
            raise _usage("--state FOLDER is needed when DST is a bucket (the job's state and audit are there)")
        return _state(Path(dst))
    if not (state / "audit.jsonl").is_file():
        raise _usage(f"{state}: no job state here (no audit.jsonl)")
    return state.resolve()


@app.command()
def verify(
    src: Annotated[str, typer.Argument(metavar="SRC", help="The job's input: file or folder, gs:// or s3:// URI.")],
    dst: Annotated[str, typer.Argument(metavar="DST", help="The job's output: folder, gs:// or s3:// URI.")],
    config: ConfigOpt = None,
    key_file: KeyFileOpt = None,
    no_ocr: Annotated[bool, typer.Option("--no-ocr", help="Skip OCR of the outputs the pixel policy scans.")] = False,
    state: StateOpt = None,
) -> None:
    """Re-read every output of a finished job and check it against its source: one line per problem."""
    from phiscrub.pipeline.storage import scheme_of
    from phiscrub.pipeline.trees import BUCKET_SCHEMES
    from phiscrub.pipeline.verify_job import verify_job

    src_scheme = scheme_of(src)
    if src_scheme == "file" and not Path(src).exists():
        raise _usage(f"{src}: no such file or folder")
    if src_scheme != "file" and src_scheme not in BUCKET_SCHEMES:
        raise _usage(f"SRC must be a file, a folder or a gs://, s3:// URI, not {src_scheme}://")
    sdir = _job_state(dst, state)
    cfg = _load(config)
    keys = _keys(key_file)
    local_dst = scheme_of(dst) == "file"
    try:
        res = verify_job(src, Path(dst).resolve() if local_dst else dst, cfg, keys, ocr=not no_ocr, state=sdir)
    except (OSError, ValueError, ImportError) as e:  # a listing refused: the storage, not the job
        raise _usage(f"cannot read the source or destination ({_why(e)})") from None
    for line in res.problems:  # one line per problem, each once, on stdout (for scripts)
        out.print(line, markup=False, highlight=False)
    for note in res.notes:  # information, never a failure
        err.print(f"note: {note}", markup=False, highlight=False)
    c = res.counts
    ocr = f", {res.ocr_checked} OCR-checked" if res.ocr_checked else ("" if res.ocr_available else ", OCR not available")
    dup = f", {c['duplicate']} duplicate" if c["duplicate"] else ""
    err.print(f"{c['done']} done, {c['quarantined']} quarantined, {c['failed']} failed, {c['dropped']} dropped{dup};"
              f" {res.outputs} output(s) re-read{ocr}: {len(res.problems)} problem(s)")
    if res.problems:
        raise typer.Exit(1)


@audit_app.command("verify")
def audit_verify(
    dst: Annotated[Path, typer.Argument(help="The job's output folder (or an audit.jsonl file).")],
    key_file: KeyFileOpt = None,
) -> None:
    """Check the hash chain, the record MACs and the head anchor; exit 1 with the first bad sequence number."""
    from phiscrub.pipeline.audit import check_log

    log = dst if dst.is_file() else _state(dst) / "audit.jsonl"
    keys = _keys(key_file, required=False)
    res = check_log(log, keys)
    for note in res.notes:
        err.print(f"note: {note}")
    if not keys:
        err.print("note: no key: hashes and links checked, record MACs not (a rewritten chain would pass)")
    if not res.ok:
        out.print(f"audit log broken at seq {res.first_bad}: {res.reason}", markup=False, highlight=False)
        raise typer.Exit(1)
    out.print(f"audit log intact: {res.records} record(s){', MACs verified' if res.keyed else ''}")


@audit_app.command("export")
def audit_export(
    dst: Annotated[Path, typer.Argument(help="The job's output folder.")],
    fmt: Annotated[str, typer.Option("--format", help="cloud-logging (LogEntry lines) or bigquery (bq load rows).")] = "cloud-logging",
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="Write here (else stdout).")] = None,
    config: ConfigOpt = None,
    project: Annotated[str, typer.Option("--project", help="Google Cloud project for logName.")] = "PROJECT_ID",
    schema_out: Annotated[Optional[Path], typer.Option("--schema-out", help="Also write the BigQuery schema JSON here.")] = None,
) -> None:
    """Export the audit records as JSON lines; retention is audit.retention_days of the config."""
    import json

    from phiscrub.pipeline.audit import read_records
    from phiscrub.pipeline.audit_export import BIGQUERY_SCHEMA, FORMATS, export, retention_hint
    from phiscrub.pipeline.sinks import atomic_write

    if fmt not in FORMATS:
        raise _usage(f"--format must be one of {list(FORMATS)}")
    cfg = _load(config)
    lines = export(read_records(_state(dst) / "audit.jsonl"), fmt, retention_days=cfg.audit_retention_days, project=project)
    text = "".join(line + "\n" for line in lines)
    if out_file is None:
        sys.stdout.write(text)
    else:
        atomic_write(out_file, text.encode(), durable=False)
    if schema_out is not None:
        atomic_write(schema_out, (json.dumps(BIGQUERY_SCHEMA, indent=1) + "\n").encode(), durable=False)
    err.print(f"retention {cfg.audit_retention_days} days (audit.retention_days); {retention_hint(fmt, cfg.audit_retention_days, project)}")


@app.command()
def report(
    dst: Annotated[str, typer.Argument(metavar="DST", help="The job's output: folder, gs:// or s3:// URI.")],
    out_file: Annotated[Optional[Path], typer.Option("--out", "-o", help="HTML file (default STATE/report.html).")] = None,
    thumbnails: Annotated[int, typer.Option("--thumbnails", help="At most this many redaction thumbnails.")] = 24,
    state: StateOpt = None,
) -> None:
    """One self-contained HTML page: totals, throughput, PHI found, modalities, slides, redactions, quarantine."""
    from phiscrub.pipeline.report import build_report
    from phiscrub.pipeline.sinks import atomic_write
    from phiscrub.pipeline.storage import scheme_of
    from phiscrub.pipeline.trees import open_tree

    sdir = _job_state(dst, state)
    try:
        tree = open_tree(Path(dst).resolve() if scheme_of(dst) == "file" else dst)
        html = build_report(tree, state=sdir, max_thumbnails=thumbnails)
    except (OSError, ValueError, ImportError) as e:
        raise _usage(f"cannot read the destination ({_why(e)})") from None
    target = out_file or sdir / "report.html"
    atomic_write(target, html.encode(), durable=False)
    err.print(f"report: {target}")


@broker_app.command("keygen")
def broker_keygen(path: Annotated[Path, typer.Argument(help="New broker key file (0600).")]) -> None:
    """Write a new honest-broker key: give it to the broker, not to whoever runs the pipeline."""
    from phiscrub.keys import generate_key_file

    try:
        generate_key_file(path)
    except FileExistsError:
        raise _usage(f"{path}: already exists; not overwriting a key") from None
    err.print(f"broker key written to {path} (mode 0600)")


@broker_app.command("lookup")
def broker_lookup(
    dst: Annotated[Path, typer.Argument(help="The job's output folder.")],
    value: Annotated[str, typer.Argument(help="An original ID or a pseudonym (either direction).")],
    kind: Annotated[Optional[str], typer.Option("--kind", help="PatientID, StudyInstanceUID, AccessionNumber, ...")] = None,
    broker_key: BrokerKeyOpt = None,
) -> None:
    """Re-identify (pseudonym -> original) or find a pseudonym (original -> pseudonym): broker key holders only."""
    from phiscrub.pipeline.audit import AuditLog
    from phiscrub.pipeline.broker import KINDS, load_broker_key, lookup

    sdir = _state(dst)
    if kind is not None and kind not in KINDS:
        raise _usage(f"--kind must be one of {list(KINDS)}")
    try:
        key = load_broker_key(broker_key)
        if key is None:
            raise KeyMissing("no broker key: pass --broker-key FILE or set $PHISCRUB_BROKER_KEY")
        found = lookup(sdir, key, value, kind)
    except KeyMissing as e:
        raise _usage(str(e)) from None
    # each lookup is logged (that one happened, and how many matched; never the value) in
    # its own chain: the broker need not hold the job's key that signs the job's audit
    log = AuditLog(sdir / "broker-lookups.jsonl")
    log.append("broker-lookup", kind=kind or "any", matches=len(found))
    log.close()
    for k, orig, pseudo in found:
        typer.echo(f"{k}\t{orig}\t{pseudo or '(removed)'}")  # tab-separated, for scripts
    if not found:
        err.print("no match")
        raise typer.Exit(1)
