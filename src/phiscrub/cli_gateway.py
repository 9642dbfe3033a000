"""``phiscrub gateway``: the DICOM C-STORE node (service/gateway.py), run in the foreground
until SIGTERM or Ctrl-C, logging JSON lines in Cloud Logging's shape (severity, message)
to stderr, so a container's logs are structured as they are.

Kept out of cli.py so the shared command module only gains an import line.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from phiscrub.cli import ConfigOpt, _load, _usage, app, err
from phiscrub.errors import ConfigError, KeyMissing
from phiscrub.extras import MissingExtra, require


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"severity": record.levelname, "message": record.getMessage(), "component": "gateway"})


@app.command()
def gateway(
    forward: Annotated[str, typer.Option("--forward", help="Destination: dicom://AET@HOST:PORT (C-STORE) or dicomweb+http(s)://HOST/PATH (STOW-RS).")],  # noqa: E501
    ae_title: Annotated[str, typer.Option("--ae-title", help="This node's AE title (also the calling AE when forwarding).")] = "PHISCRUB",
    port: Annotated[int, typer.Option("--port", help="DICOM port to listen on (0: any free port).")] = 11112,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "0.0.0.0",
    allow: Annotated[Optional[list[str]], typer.Option("--allow", help="A calling AE title allowed to send (repeat); others are rejected at association.")] = None,  # noqa: E501
    allow_any: Annotated[bool, typer.Option("--allow-any", help="Accept any calling AE title (not recommended).")] = False,
    max_associations: Annotated[int, typer.Option("--max-associations", help="Concurrent associations; more are rejected.")] = 10,
    spool: Annotated[Path, typer.Option("--spool", help="Durable queue folder: originals until de-identified, outputs until forwarded, state and audit.")] = Path("phiscrub-gateway"),  # noqa: E501
    quarantine: Annotated[Optional[Path], typer.Option("--quarantine", help="Originals that fail verification (default SPOOL/quarantine).")] = None,  # noqa: E501
    backoff_base: Annotated[float, typer.Option("--backoff-base", help="First retry delay bound (s) while the destination is down.")] = 1.0,
    backoff_cap: Annotated[float, typer.Option("--backoff-cap", help="Largest retry delay bound (s).")] = 300.0,
    config: ConfigOpt = None,
    key_file: Annotated[Optional[Path], typer.Option("--key-file", envvar="PHISCRUB_KEY_FILE", help="Key file (else $PHISCRUB_KEY_FILE, else $PHISCRUB_KEY).")] = None,  # noqa: E501
) -> None:
    """DICOM C-STORE node: de-identify what is received, verify it, and forward it (C-STORE or STOW-RS)."""
    try:
        require("gateway", what="phiscrub gateway")
    except MissingExtra as e:  # as Text: console markup would take [extra] for a style and drop it
        err.print(Text.assemble(("error:", "red"), " ", str(e)))
        raise typer.Exit(2) from None
    from phiscrub.keys import load_key
    from phiscrub.service.gateway import Gateway, GatewayOptions

    allowed = tuple(a.strip() for a in (allow or []) if a.strip())
    if not allowed and not allow_any:
        raise _usage("name the senders with --allow AET (repeatable), or pass --allow-any")
    if any(len(a) > 16 for a in (*allowed, ae_title)):
        raise _usage("AE titles are at most 16 characters")
    if max_associations < 1:
        raise _usage("--max-associations must be at least 1")
    cfg = _load(config)
    try:
        keys = load_key(key_file)
    except KeyMissing as e:
        raise _usage(str(e)) from None
    handler = logging.StreamHandler()
    handler.setFormatter(_JsonLines())
    root = logging.getLogger("phiscrub")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False
    opts = GatewayOptions(forward=forward, spool=spool.resolve(), ae_title=ae_title, host=host, port=port, allowed=allowed,
                          allow_any=allow_any, max_associations=max_associations,
                          quarantine=quarantine.resolve() if quarantine else None,
                          backoff_base_s=backoff_base, backoff_cap_s=backoff_cap)
    try:
        gw = Gateway(opts, cfg, keys)
        gw.start()
    except ConfigError as e:
        raise _usage(str(e)) from None
    except OSError as e:
        raise _usage(f"cannot listen on port {port} ({e.strerror or type(e).__name__})") from None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    logging.getLogger("phiscrub.gateway").info("stopping: no new associations; finishing the instance in hand")
    gw.stop()
