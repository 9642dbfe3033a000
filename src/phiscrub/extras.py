"""Optional dependencies, grouped as the extras of pyproject.toml.

Why: `pip install phiscrub` is the CLI for files and folders (DICOM headers, pixels,
slides). Buckets, Dask, the HTTP service and the DICOM gateway need more, installed as
extras (`phiscrub[cloud]`, `[dask]`, `[service]`, `[gateway]`, `[all]`). A command that
reaches for one without its extra says in one line what to install, instead of an
ImportError traceback from deep inside a worker. Call ``require`` right before the
optional import, never at module top level on the core path.
"""

from __future__ import annotations

import importlib

from phiscrub.errors import PhiscrubError

# extra -> the modules it brings (the ones phiscrub imports), for `require` and the tests
EXTRAS: dict[str, tuple[str, ...]] = {
    "cloud": ("fsspec", "gcsfs", "s3fs"),
    "dask": ("dask", "distributed"),
    "service": ("fastapi", "uvicorn", "prometheus_client"),
    "gateway": ("pynetdicom",),
}


class MissingExtra(PhiscrubError, ImportError):
    """An optional dependency is not installed. Also an ImportError, so that code which
    already falls back on a failed import keeps doing so."""

    reason = "missing-extra"

    def __init__(self, extra: str, what: str = "this") -> None:
        self.extra = extra
        super().__init__(f"{what} needs phiscrub[{extra}]: pip install 'phiscrub[{extra}]'")


def require(extra: str, *modules: str, what: str = "this") -> None:
    """Import ``modules`` (default: all of the extra's) or raise MissingExtra naming the
    extra. A module that is absent (or one of its own dependencies is) counts as missing:
    installing the extra mends both. Any other import error is raised as it is, since it
    says more than 'install it'."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra: {extra}")
    for name in modules or EXTRAS[extra]:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            raise MissingExtra(extra, what) from e

