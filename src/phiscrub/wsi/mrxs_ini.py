"""Slidedat.ini as lines: read values, change some, render the rest untouched.

Why by hand: configparser lower-cases keys, drops comments and rewrites spacing, and
GLib's key-file rules (what OpenSlide reads) differ from it; here every line that is not
changed comes back byte-for-byte, so the output differs from the source only where PHI was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from phiscrub.errors import CorruptFile

_SECTION = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY = re.compile(r"^(\s*)([^=#;\[]+?)(\s*=\s*)(.*?)(\s*)$")
BOM = "\ufeff"


@dataclass
class Line:
    raw: str  # without the line ending
    section: str | None = None
    key: str | None = None
    value: str | None = None
    sep: str = " = "
    indent: str = ""

    def render(self) -> str:
        if self.key is None:
            return self.raw
        return f"{self.indent}{self.key}{self.sep}{self.value}"


@dataclass
class Ini:
    lines: list[Line] = field(default_factory=list)
    newline: str = "\n"
    bom: bool = False
    final_newline: bool = True

    @classmethod
    def parse(cls, data: bytes) -> Ini:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")  # GLib would refuse; old scanners wrote Latin-1
        bom = text.startswith(BOM)
        if bom:
            text = text[1:]
        newline = "\r\n" if "\r\n" in text else "\n"
        body = text.split(newline)
        final = body[-1] == ""
        if final:
            body.pop()
        ini = cls(newline=newline, bom=bom, final_newline=final)
        section = None
        for raw in body:
            m = _SECTION.match(raw)
            if m:
                section = m.group(1).strip()
                ini.lines.append(Line(raw, section))
                continue
            m = _KEY.match(raw)
            if m and section is not None and not raw.lstrip().startswith(("#", ";")):
                ini.lines.append(Line(raw, section, m.group(2).strip(), m.group(4), m.group(3), m.group(1)))
            else:
                ini.lines.append(Line(raw, section))
        if not any(ln.section is not None for ln in ini.lines):
            raise CorruptFile("mrxs: Slidedat.ini has no sections")
        return ini

    def render(self) -> bytes:
        text = self.newline.join(ln.render() for ln in self.lines)
        if self.final_newline:
            text += self.newline
        return ((BOM if self.bom else "") + text).encode("utf-8")

    # -- access
    def sections(self) -> list[str]:
        seen: list[str] = []
        for ln in self.lines:
            if ln.section is not None and ln.key is None and ln.section not in seen and _SECTION.match(ln.raw):
                seen.append(ln.section)
        return seen

    def items(self, section: str) -> list[Line]:
        return [ln for ln in self.lines if ln.section == section and ln.key is not None]

    def get(self, section: str, key: str) -> str | None:
        for ln in self.items(section):
            if ln.key == key:
                return ln.value
        return None

    def require(self, section: str, key: str) -> str:
        v = self.get(section, key)
        if v is None or v == "":
            raise CorruptFile(f"mrxs: Slidedat.ini lacks [{section}] {key}")
        return v

    def integer(self, section: str, key: str) -> int:
        try:
            return int(self.require(section, key))
        except ValueError:
            raise CorruptFile(f"mrxs: Slidedat.ini [{section}] {key} is not an integer") from None

    def set(self, section: str, key: str, value: str) -> None:
        for ln in self.items(section):
            if ln.key == key:
                ln.value = value

    def drop_section(self, section: str) -> None:
        self.lines = [ln for ln in self.lines if ln.section != section]

    def replace_keys(self, section: str, prefix: str, new: list[tuple[str, str]]) -> None:
        """Swap every key of ``section`` starting with ``prefix`` for ``new``, placed where
        the first of them stood."""
        at = None
        kept: list[Line] = []
        for ln in self.lines:
            if ln.section == section and ln.key is not None and ln.key.startswith(prefix):
                if at is None:
                    at = len(kept)
                continue
            kept.append(ln)
        if at is None:
            at = len(kept)
        fresh = [Line("", section, k, v) for k, v in new]
        self.lines = kept[:at] + fresh + kept[at:]
