"""The core install: the CLI for files and folders works without any extra, and a command
that needs one names it in one line (src/phiscrub/extras.py).

Why in a subprocess that blocks the extras' modules: the test venv has every extra, so
an optional import slipping onto the core path would pass unnoticed here and break only
`pip install phiscrub`. The CI wheel job (.ci/wheel_check) checks a real core install too.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from phiscrub.extras import EXTRAS, MissingExtra, require

from .conftest import KEY

BLOCKED = sorted({m for mods in EXTRAS.values() for m in mods} | {"starlette", "botocore", "aiobotocore"})

# runs phiscrub's CLI with every module of every extra unimportable
SCRIPT = """
import importlib.abc, sys
BLOCKED = {blocked!r}

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Block())
sys.argv = ["phiscrub", *sys.argv[1:]]
from phiscrub.cli import main
try:
    main()
finally:
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
"""


def _core(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    code = SCRIPT.format(blocked=set(BLOCKED))
    env = {"PATH": "/usr/bin:/bin", "PHISCRUB_KEY": KEY, "HOME": str(cwd), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_require_names_the_extra_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(EXTRAS, "cloud", ("phiscrub_no_such_module",))
    with pytest.raises(MissingExtra) as info:
        require("cloud", what="gs://")
    assert str(info.value) == "gs:// needs phiscrub[cloud]: pip install 'phiscrub[cloud]'"
    assert isinstance(info.value, ImportError)  # code that falls back on ImportError still does
    with pytest.raises(ValueError):
        require("no-such-extra")


def test_core_commands_need_no_extra(tmp_path: Path) -> None:
    demo = _core("demo", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    src, out, key = (str(tmp_path / "demo" / p) for p in ("input", "output", "demo.key"))
    first = next((tmp_path / "demo" / "input").rglob("*.dcm"))
    for args in (["inspect", str(first)], ["verify", src, out, "--key-file", key], ["report", out],
                 ["deidentify", src, str(tmp_path / "again"), "-q", "-j", "1"]):
        res = _core(*args, cwd=tmp_path)
        assert res.returncode == 0, (args, res.stdout[-2000:], res.stderr[-2000:])


# cli.py prints errors as console markup (_usage, main), which takes "[cloud]" for a style
# and drops it: until it escapes them (rich.markup.escape), these print "phiscrub[...]" bare


@pytest.mark.parametrize(("args", "extra"), [
    (["serve", "--no-auth"], "service"),
    (["gateway", "--forward", "dicom://X@127.0.0.1:1", "--allow-any"], "gateway"),
    pytest.param(["deidentify", "gs://bucket/in", "out", "--state", "state"], "cloud"),
    pytest.param(["deidentify", "in", "s3://bucket/out", "--state", "state"], "cloud"),
    pytest.param(["deidentify", "in", "out", "--scheduler", "tcp://127.0.0.1:1"], "dask"),
])
def test_a_missing_extra_is_named_in_one_line(tmp_path: Path, args: list[str], extra: str) -> None:
    (tmp_path / "in").mkdir()
    demo = _core("demo", str(tmp_path / "demo"), cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    for f in list((tmp_path / "demo" / "input").rglob("*.dcm"))[:2]:
        (tmp_path / "in" / f.name).write_bytes(f.read_bytes())
    res = _core(*args, cwd=tmp_path)
    assert res.returncode == 2, (res.stdout, res.stderr)
    want = f"needs phiscrub[{extra}]: pip install 'phiscrub[{extra}]'"
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert any(want in ln for ln in lines), res.stderr
    assert "Traceback" not in res.stderr
