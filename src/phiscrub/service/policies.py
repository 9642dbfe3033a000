"""Named policies: NAME.yaml or NAME.json in the configured folder, chosen per request by
name. 'default' is the built-in policy, and the policies shipped with phiscrub
(policy/data/policies/: research, strict) answer to their names, unless the folder has a
file of the same name.

A name is checked against a strict pattern before it touches the file system (no path
can be smuggled in), and a file is re-read when its mtime changes, so an operator can fix
a policy and have a reviewer release what it quarantined without restarting the service.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from phiscrub.errors import ConfigError
from phiscrub.policy.config import Config, load_config

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SHIPPED = Path(__file__).resolve().parents[1] / "policy" / "data" / "policies"


class UnknownPolicy(LookupError):
    pass


class PolicyBook:
    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[tuple[str, int, int], Config]] = {}
        self._lock = threading.Lock()

    def _folders(self) -> list[Path]:
        """The configured folder first (its files win), then the shipped policies."""
        return [f for f in (self.folder, SHIPPED) if f is not None]

    def _file(self, name: str) -> Path | None:
        for folder in self._folders():
            for ext in (".yaml", ".yml", ".json"):
                p = folder / f"{name}{ext}"
                if p.is_file():
                    return p
        return None

    def get(self, name: str) -> Config:
        """Raises UnknownPolicy for a name that is malformed or not configured, and
        ConfigError for a policy file that does not load."""
        if not NAME_RE.match(name or "") or name.endswith("."):
            raise UnknownPolicy("unknown policy name")
        path = self._file(name)
        if path is None:
            if name != "default":
                raise UnknownPolicy("unknown policy name")
            mtime = ("", 0, 0)
        else:  # the path too: a file added to the folder replaces the shipped one of its name
            st = path.stat()
            mtime = (str(path), st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(name)
            if hit is not None and hit[0] == mtime:
                return hit[1]
        cfg = load_config(path)
        with self._lock:
            self._cache[name] = (mtime, cfg)
        return cfg

    def names(self) -> list[str]:
        found = {"default"}
        for folder in self._folders():
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.suffix in (".yaml", ".yml", ".json") and NAME_RE.match(p.stem):
                        found.add(p.stem)
        return sorted(found)

    def check(self) -> list[str]:
        """Problems with the configured policies (for /readyz), PHI-free."""
        problems = []
        for n in self.names():
            try:
                self.get(n)
            except (ConfigError, UnknownPolicy) as e:
                problems.append(f"policy {n}: {e}")
        return problems
