"""`phiscrub serve`: the HTTP service (uploads, jobs, bucket events, dashboard) on uvicorn.

Options override the PHISCRUB_SERVE_* environment variables (service/settings.py), which
is how Cloud Run and Kubernetes configure it. The server refuses to start with auth on
and no token: it never serves the PHI pipeline to whoever can reach the port.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from phiscrub.cli import KeyFileOpt, _usage, app, err
from phiscrub.errors import KeyMissing
from phiscrub.extras import MissingExtra, require


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", envvar="PHISCRUB_SERVE_HOST", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="PORT", help="Port (Cloud Run sets $PORT).")] = 8080,
    state: Annotated[Optional[Path], typer.Option("--state", help="State folder: SQLite, audit log, quarantine (else $PHISCRUB_SERVE_STATE).")] = None,  # noqa: E501
    policies: Annotated[Optional[Path], typer.Option("--policies", help="Folder of named policies NAME.yaml|json (else $PHISCRUB_SERVE_POLICIES).")] = None,  # noqa: E501
    tokens_file: Annotated[Optional[Path], typer.Option("--tokens-file", help="Bearer tokens, one a line (else $PHISCRUB_SERVE_TOKENS_FILE / $PHISCRUB_SERVE_TOKENS).")] = None,  # noqa: E501
    event_dst: Annotated[Optional[str], typer.Option("--event-dst", help="Where bucket-event items go: folder or URI (else $PHISCRUB_SERVE_EVENT_DST).")] = None,  # noqa: E501
    key_file: KeyFileOpt = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="No bearer tokens: only behind a platform that authenticates (Cloud Run IAM).")] = False,  # noqa: E501
) -> None:
    """Serve the de-identification pipeline over HTTP (FastAPI on uvicorn)."""
    try:
        require("service", what="phiscrub serve")
    except MissingExtra as e:  # as Text: console markup would take [extra] for a style and drop it
        err.print(Text.assemble(("error:", "red"), " ", str(e)))
        raise typer.Exit(2) from None
    import uvicorn

    from phiscrub.keys import load_key
    from phiscrub.service.app import create_app
    from phiscrub.service.logs import configure
    from phiscrub.service.settings import Settings, read_tokens

    try:
        s = Settings.from_env()
        extra = read_tokens(tokens_file) if tokens_file is not None else []
    except (ValueError, OSError) as e:
        raise _usage(str(e) if isinstance(e, ValueError) else f"cannot read the tokens file ({e.strerror})") from None
    s = dataclasses.replace(
        s, tokens=s.tokens + tuple(extra), auth=s.auth and not no_auth,
        state_dir=state or s.state_dir, policies_dir=policies or s.policies_dir,
        event_dst=event_dst if event_dst is not None else s.event_dst, key_file=key_file or s.key_file)
    if s.auth and not s.tokens:
        raise _usage("auth is on and no token is configured: --tokens-file, $PHISCRUB_SERVE_TOKENS(_FILE), or --no-auth")
    if s.policies_dir is not None and not s.policies_dir.is_dir():
        raise _usage("the policies folder does not exist")
    try:
        keys = load_key(s.key_file)
    except KeyMissing as e:
        raise _usage(str(e)) from None
    configure()
    application = create_app(s, keys)
    err.print(f"phiscrub serve on http://{host}:{port} (auth {'on' if s.auth else 'OFF'})")
    uvicorn.run(application, host=host, port=port, access_log=False, log_config=None,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", timeout_graceful_shutdown=30)
