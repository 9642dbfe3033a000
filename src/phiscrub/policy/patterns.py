"""User regexes from the config, compiled once at load time, with errors naming the key."""

from __future__ import annotations

import re
from typing import Any

from phiscrub.errors import ConfigError


def compile_patterns(values: Any, where: str) -> tuple[re.Pattern[str], ...]:
    out = []
    for i, p in enumerate(values or []):
        try:
            out.append(re.compile(str(p), re.IGNORECASE))
        except re.error:
            raise ConfigError(f"{where}[{i}]: not a valid regular expression") from None
    return tuple(out)
