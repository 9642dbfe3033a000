"""Docs that run (issue 18 item 4): every shell block of README.md and docs/*.md is run here,
against local files and the servers the suite already starts, or is marked as needing a
cloud account or Docker.

A block's marker is an HTML comment on the line before its fence (invisible on GitHub and
in the site):

- ``<!-- docs: run SCENARIO -->``: run by the test of that scenario (SCENARIOS below), as
  written, with bash -e, in the scenario's folder; ``run SCENARIO/server`` is the
  scenario's long-running server, started in the background and stopped afterwards. The
  only edits are the port numbers of SUBSTITUTIONS (free ports, not the well-known ones
  the docs show), and each of those must appear in the scenario's blocks;
- ``<!-- docs: needs cloud -->`` or ``<!-- docs: needs docker -->``: not run (neither
  exists where the tests run);
- ``<!-- docs: config -->`` before a yaml or json block: loaded as a configuration.

test_every_shell_block_is_run_or_marked fails on a shell block with no marker, a marker
naming no scenario, or a fence without a language; test_the_check_catches_unmarked_blocks
shows that it does.

Blocks see no PHISCRUB_* variable of the test process (so each must bring its own key),
and PATH starts with this interpreter's folder (so `phiscrub` is the one under test). The
tests that run commands or servers are marked slow (about 45 s for the file on 2 cores).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests

from phiscrub.demo import make_study
from tests.conftest import scan_tree
from tests.pipeline.servers import free_port, gcs_emulator, stop_process, wait_ready  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = {"sh", "bash", "shell", "console", "zsh"}
NOT_RUN = {"needs cloud", "needs docker"}
SCENARIOS = {"make", "first-run", "workspace", "gcs", "orthanc", "gateway", "dask", "service"}
SERVERS = {"gateway", "dask", "service"}  # scenarios with a server block
# the well-known ports the docs show -> replaced by free ports in each scenario
SUBSTITUTIONS = {"gcs": ("9023",), "orthanc": ("8042",), "gateway": ("4242", "11112"), "dask": ("8786",),
                 "service": ("8080",)}
MARK = re.compile(r"^\s*<!--\s*docs:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s{0,3})(`{3,}|~{3,})\s*([^`\s]*)")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    mark: str | None

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def scenario(self) -> str | None:
        if self.mark and self.mark.startswith("run "):
            return self.mark[4:].strip().split("/")[0]
        return None

    @property
    def server(self) -> bool:
        return bool(self.mark) and self.mark.endswith("/server")


def parse(text: str, page: str) -> list[Block]:
    """The fenced blocks of a Markdown text, each with the marker on the line before it."""
    lines = text.splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(2), m.group(3).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = MARK.match(lines[k]) if k >= 0 else None
        out.append(Block(page, i + 1, lang, "\n".join(lines[i + 1:j]) + "\n", mark.group(1) if mark else None))
        i = j + 1
    return out


def problems(blocks: list[Block]) -> list[str]:
    bad = []
    for b in blocks:
        if not b.lang:
            bad.append(f"{b.id}: a fence without a language (sh, yaml, text, ...)")
        elif b.lang in SHELL:
            if b.mark is None:
                bad.append(f"{b.id}: a shell block neither run by a test nor marked 'needs cloud' / 'needs docker'")
            elif b.mark not in NOT_RUN and not b.mark.startswith("run "):
                bad.append(f"{b.id}: marker {b.mark!r} on a shell block is not 'run SCENARIO', 'needs cloud' or 'needs docker'")
            elif b.mark not in NOT_RUN and b.scenario not in SCENARIOS:
                bad.append(f"{b.id}: marker {b.mark!r} names no scenario of tests/test_docs.py")
            elif b.server and b.scenario not in SERVERS:
                bad.append(f"{b.id}: scenario {b.scenario!r} has no server")
        elif b.mark is not None and not (b.mark == "config" and b.lang in ("yaml", "json")):
            bad.append(f"{b.id}: marker {b.mark!r} on a {b.lang} block")
    return bad


def all_blocks() -> list[Block]:
    return [b for p in PAGES for b in parse(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]


BLOCKS = all_blocks()


def of(scenario: str, server: bool | None = None) -> list[Block]:
    return [b for b in BLOCKS if b.lang in SHELL and b.scenario == scenario and (server is None or b.server == server)]


def once(blocks: list[Block]) -> list[Block]:
    """Blocks of the same text (README.md repeats docs/index.md's first run) run once."""
    seen: dict[str, Block] = {}
    for b in blocks:
        if b.text in seen:
            first = seen[b.text]
            seen[b.text] = Block(f"{first.id}+{b.page}", b.line, first.lang, first.text, first.mark)
        else:
            seen[b.text] = b
    return list(seen.values())


# ---------------------------------------------------------------- the inventory


def test_every_shell_block_is_run_or_marked() -> None:
    assert problems(BLOCKS) == []
    assert any(b.lang in SHELL for b in BLOCKS)


def test_the_check_catches_unmarked_blocks() -> None:
    text = ("Text.\n\n```sh\nphiscrub deidentify a b\n```\n\n<!-- docs: run nowhere -->\n```bash\nls\n```\n\n"
            "<!-- docs: run make/server -->\n```sh\nmake x\n```\n\n```\nls\n```\n\n<!-- docs: needs cloud -->\n"
            "```sh\ngcloud run services list\n```\n\n<!-- docs: config -->\n```sh\nls\n```\n")
    found = problems(parse(text, "NEW.md"))
    assert [p.split(":")[1] for p in found] == ["3", "8", "13", "17", "27"], found
    assert "neither run by a test nor marked" in found[0] and "names no scenario" in found[1]
    assert "has no server" in found[2] and "without a language" in found[3] and "is not 'run SCENARIO'" in found[4]


def test_every_scenario_has_blocks_and_its_ports_appear() -> None:
    for name in SCENARIOS:
        assert of(name), f"no block runs scenario {name!r}"
    for name in SERVERS:
        assert len(of(name, server=True)) == 1 and of(name, server=False), name
    for name, ports in SUBSTITUTIONS.items():
        text = "".join(b.text for b in of(name))
        for port in ports:
            assert port in text, (name, port)


def _slug(heading: str) -> str:
    """GitHub's and MkDocs' anchor of a heading (as far as these pages need)."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^a-z0-9 -]", "", text).replace(" ", "-")


def test_readme_links_resolve() -> None:
    """mkdocs build --strict checks the links of docs/; README.md is outside the site, so
    its relative links (and their anchors) are checked here."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if re.match(r"[a-z]+://", link):
            continue
        path, _, anchor = link.partition("#")
        target = ROOT / path
        assert target.is_file(), link
        if anchor:
            headings = re.findall(r"^#+\s+(.*)$", target.read_text(encoding="utf-8"), re.M)
            assert anchor in {_slug(h) for h in headings}, link


# ---------------------------------------------------------------- running blocks


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHISCRUB_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**env, **extra}


def _script(block: Block, ports: dict[str, int]) -> str:
    text = block.text
    for port, new in ports.items():
        text = re.sub(rf"(?<![0-9]){port}(?![0-9])", str(new), text)
    return "set -e\n" + text


def run_block(block: Block, cwd: Path, ports: dict[str, int] | None = None, env: dict[str, str] | None = None,
              timeout: float = 180) -> subprocess.CompletedProcess:
    proc = subprocess.run(["bash", "-c", _script(block, ports or {})], cwd=cwd, env=env or _env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{block.id} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@contextmanager
def background(block: Block, cwd: Path, ports: dict[str, int], log: Path, env: dict[str, str] | None = None
               ) -> Iterator[subprocess.Popen]:
    """A server block in its own process group, stopped (the group: bash and what it
    started) when the scenario ends."""
    with open(log, "wb") as fh:
        proc = subprocess.Popen(["bash", "-c", _script(block, ports)], cwd=cwd, env=env or _env(), stdout=fh,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _tail(log: Path) -> str:
    return ": " + log.read_text(errors="replace")[-2000:] if log.exists() else ""


# ---------------------------------------------------------------- the folders blocks run in


def _scans(folder: Path) -> list[str]:
    planted, _ = make_study(folder / "scans", n_ct=2, n_mr=1, folder=".")  # scans/Davidson_CT_001.dcm ...
    return planted.values


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the pages assume is there: scans/ (a synthetic study with planted PHI),
    slides/ (openslide-python's small public Aperio slide), myrun/ from `phiscrub init`,
    and deid/, the first run's job."""
    w = tmp_path_factory.mktemp("docs-workspace")
    _scans(w)
    (w / "slides").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "real_slides" / "aperio-small.svs", w / "slides" / "Davidson_biopsy.svs")
    env = _env()
    for args in (["init", "myrun"],
                 ["deidentify", "scans", "deid", "-q", "--config", "myrun/phiscrub.yaml", "--key-file", "myrun/phiscrub.key"]):
        proc = subprocess.run(["phiscrub", *args], cwd=w, env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr[-2000:]
    return w


def test_make_targets_exist() -> None:
    """`make demo` and `make test` install packages (and `make test` runs this file), so
    they are not run here: `make -n` checks that each target the block names exists and
    parses; `phiscrub demo` itself runs in the workspace scenario (docs/cli.md)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (block,) = of("make")
    targets = re.findall(r"^make\s+([\w-]+)", block.text, re.M)
    assert targets == ["demo", "test"], targets
    for t in targets:
        proc = subprocess.run(["make", "-n", t], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize("block", once(of("first-run")), ids=lambda b: b.id)
def test_first_run(block: Block, tmp_path: Path) -> None:
    planted = _scans(tmp_path)
    run_block(block, tmp_path)
    deid = tmp_path / "deid"
    assert len(list(deid.rglob("*.dcm"))) == 4
    assert (deid / ".phiscrub" / "report.html").is_file()
    assert (tmp_path / "myrun" / "phiscrub.key").stat().st_mode & 0o077 == 0
    assert scan_tree(deid, planted + ["Davidson_CT_001"]) == {}


@pytest.mark.slow
@pytest.mark.parametrize("block", once(of("workspace")), ids=lambda b: b.id)
def test_workspace_block(block: Block, workspace: Path) -> None:
    run_block(block, workspace)


@pytest.mark.slow
def test_gcs(workspace: Path, gcs_emulator: str) -> None:  # noqa: F811
    from phiscrub.pipeline.objectstore import filesystem

    port = int(gcs_emulator.rsplit(":", 1)[1])
    fs = filesystem("gs", gcs_emulator)
    fs.mkdir("deid-bucket")
    for block in of("gcs"):
        run_block(block, workspace, {"9023": port})
    assert len([k for k in fs.find("deid-bucket/run1") if k.endswith(".dcm")]) == 4


@pytest.mark.slow
def test_orthanc(workspace: Path, tmp_path: Path) -> None:
    from tests.pipeline.orthanc_server import running_orthanc

    with running_orthanc(tmp_path / "orthanc") as orthanc:
        for f in sorted((workspace / "scans").rglob("*.dcm")):
            orthanc.upload(f.read_bytes())
        port = int(orthanc.url.rsplit(":", 1)[1])
        for block in of("orthanc"):
            run_block(block, workspace, {"8042": port})
        assert len(list((workspace / "deid-from-orthanc").rglob("*.dcm"))) == 4
        assert orthanc.count() == 8  # the 4 sources and the 4 outputs sent by STOW-RS


@pytest.mark.slow
def test_gateway(workspace: Path, tmp_path: Path) -> None:
    from tests.service.test_gateway import orthanc_node

    if shutil.which("storescu") is None:
        pytest.skip("dcmtk's storescu is not installed (apt-get install dcmtk)")
    with orthanc_node(tmp_path / "orthanc") as node:
        ports = {"4242": node.dicom_port, "11112": free_port()}
        log = tmp_path / "gateway.log"
        (server,) = of("gateway", server=True)
        with background(server, workspace, ports, log) as proc:
            wait_ready(proc, lambda: "listening as" in log.read_text(errors="replace"), "phiscrub gateway", 60,
                       lambda: _tail(log))
            for block in of("gateway", server=False):
                run_block(block, workspace, ports)
            deadline = time.monotonic() + 60
            while len(node.instances()) < 4 and time.monotonic() < deadline:
                time.sleep(0.2)
        assert len(node.instances()) == 4, _tail(log)
        for blob in node.files():
            assert b"Davidson" not in blob and b"MRN4471923" not in blob


@pytest.mark.slow
def test_dask(workspace: Path, tmp_path: Path) -> None:
    if shutil.which("dask", path=_env()["PATH"]) is None:
        pytest.skip("dask is not installed (pip install -e '.[dask]')")
    from distributed import Client

    port = free_port()
    log = tmp_path / "dask.log"
    (server,) = of("dask", server=True)
    with background(server, workspace, {"8786": port}, log) as proc:
        def two_workers() -> bool:
            try:
                with Client(f"tcp://127.0.0.1:{port}", timeout=2) as c:
                    return len(c.scheduler_info()["workers"]) >= 2
            except OSError:
                return False

        wait_ready(proc, two_workers, "dask scheduler and workers", 90, lambda: _tail(log))
        for block in of("dask", server=False):
            run_block(block, workspace, {"8786": port})
    assert len(list((workspace / "deid-dask").rglob("*.dcm"))) == 4


@pytest.mark.slow
def test_service(workspace: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    (server,) = of("service", server=True)

    def healthy() -> bool:
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    with background(server, workspace, {"8080": port}, log) as proc:
        wait_ready(proc, healthy, "phiscrub serve", 60, lambda: _tail(log))
        outs = [run_block(block, workspace, {"8080": port}) for block in of("service", server=False)]
        token = (workspace / "myrun" / "tokens.txt").read_text().split()[0]
        auth = {"Authorization": f"Bearer {token}"}
        # the upload came back de-identified under the research policy, which keeps the patient's age
        out = pydicom.dcmread(workspace / "deid.dcm")
        assert str(out.PatientName).startswith("PS^") and out.PatientAge == "069Y"
        assert "x-phiscrub-output" in outs[0].stdout.lower()
        assert '"research"' in outs[0].stdout and '"strict"' in outs[0].stdout
        # the job: wait until it is done, then every item is a success
        job = next(o.stdout for o in outs if '"metadata"' in o.stdout)
        name = re.search(r'"name"\s*:\s*"([^"]+)"', job).group(1).rsplit("/", 1)[-1]
        deadline = time.monotonic() + 90
        while True:
            op = requests.get(f"{url}/v1/jobs/{name}", headers=auth, timeout=10).json()
            if op.get("done") or time.monotonic() > deadline:
                break
            time.sleep(0.3)
        assert op.get("done") and "error" not in op, op
        assert op["metadata"]["counter"].get("success") == "4", op
    assert len(list((workspace / "deid-service-job").rglob("*.dcm"))) == 4


# ---------------------------------------------------------------- configurations on the pages


CONFIGS = [b for b in BLOCKS if b.mark == "config"]


@pytest.mark.parametrize("block", CONFIGS, ids=lambda b: b.id)
def test_config_block_loads(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from phiscrub.policy.config import load_config

    monkeypatch.chdir(tmp_path)
    # the files the examples name
    (tmp_path / "slides.csv").write_text("slide,patient,issuer\nbiopsy.svs,P1,\n")
    (tmp_path / "my-pixel-rules.yaml").write_text("rules: []\n")
    path = tmp_path / f"config.{block.lang}"
    path.write_text(block.text)
    cfg = load_config(path)
    assert cfg.policy.digest()


def test_config_examples_are_on_the_pages() -> None:
    assert len(CONFIGS) >= 3


# ---------------------------------------------------------------- the policies the service example serves


def test_shipped_policies_are_served_by_name(tmp_path: Path) -> None:
    from phiscrub.service.policies import SHIPPED, PolicyBook

    shipped = sorted(p.stem for p in SHIPPED.glob("*.yaml"))
    assert {"research", "strict"} <= set(shipped)
    book = PolicyBook(None)
    assert book.names() == sorted({"default", *shipped})
    assert book.check() == []
    assert book.get("research").policy.options != book.get("default").policy.options
    # a file of the operator's folder replaces the shipped one of its name
    (tmp_path / "research.yaml").write_text("profile: minimal\n")
    (tmp_path / "local.yaml").write_text("profile: basic\n")
    own = PolicyBook(tmp_path)
    assert own.get("research").policy.profile == "minimal"
    assert own.names() == sorted({"default", "local", *shipped})
    assert PolicyBook(None).get("research").policy.profile == "basic"
