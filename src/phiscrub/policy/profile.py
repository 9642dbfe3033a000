"""The resolved policy: for one attribute in one context, which action and why.

Order: per-tag overrides first (they are the user's last word), then the named profile
(the Annex E table with the selected options), then the defaults the standard intends:
standard attributes the table does not list are kept, private and unknown ones removed.
Dates and times are the exception: those the table does not list fall to the date safety
net (date_net.py), as the UIDs it does not list fall to header's UID net.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag

from phiscrub.policy import annex_e, date_net, identifier_net
from phiscrub.policy.actions import Action, Option
from phiscrub.policy.overrides import Override
from phiscrub.policy.safe_private import safe_private_action

PROFILES = ("basic", "minimal", "keep_all", "deidentify_tag_contents")


@dataclass(frozen=True)
class Rule:
    action: Action
    source: str  # PHI-free provenance: "annex-e", "option:NAME", "override:N", "default", ...


@cache
def minimal_keep_list() -> frozenset[int]:
    """Tags a 'minimal' profile keeps: what a viewer needs to show the image right."""
    from pydicom.datadict import tag_for_keyword

    text = resources.files("phiscrub.policy.data").joinpath("minimal_keep_list.txt").read_text()
    tags = set()
    for line in text.splitlines():
        kw = line.split("#", 1)[0].strip()
        if kw:
            t = tag_for_keyword(kw)
            if t is None:
                raise ValueError(f"minimal_keep_list.txt: unknown keyword {kw}")
            tags.add(t)
    return frozenset(tags)


@dataclass
class Policy:
    profile: str = "basic"
    options: frozenset[Option] = frozenset()
    overrides: tuple[Override, ...] = ()
    date_shift_min: int = -3650
    date_shift_max: int = -1
    pseudonymize_patient: bool = True
    text_marker: str = "[REMOVED]"
    extra_digest: dict = field(default_factory=dict)  # other settings that change output bytes
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"profile: unknown {self.profile!r}; use one of {PROFILES}")
        if (
            Option.RETAIN_LONGITUDINAL_FULL_DATES in self.options
            and Option.RETAIN_LONGITUDINAL_MODIFIED_DATES in self.options
        ):
            raise ValueError(
                "options: retain_longitudinal_full_dates and retain_longitudinal_modified_dates"
                " exclude each other"
            )
        if self.profile == "deidentify_tag_contents":
            self.options = self.options | {Option.CLEAN_DESCRIPTORS, Option.CLEAN_STRUCTURED_CONTENT}
        if self.date_shift_min > self.date_shift_max:
            raise ValueError("date_shift: min_days is greater than max_days")

    # -- identity of the policy, for DeidentificationMethod and the audit trail
    def digest(self) -> str:
        data = resources.files("phiscrub.policy.data")
        table_sha = hashlib.sha256(b"".join(data.joinpath(n).read_bytes() for n in annex_e.POLICY_FILES)).hexdigest()
        doc = {
            "profile": self.profile,
            "options": sorted(o.value for o in self.options),
            "overrides": [o.describe() for o in self.overrides],
            "date_shift": [self.date_shift_min, self.date_shift_max],
            "pseudonymize_patient": self.pseudonymize_patient,
            "marker": self.text_marker,
            "table": table_sha,
            "extra": self.extra_digest,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def has(self, option: Option) -> bool:
        return option in self.options

    # -- resolution
    def resolve(
        self,
        tag: int,
        vr: str | None,
        iod: str | None = None,
        nested: bool = False,
        private_creator: str | None = None,
    ) -> Rule:
        key = (tag, vr, iod, nested, private_creator)
        rule = self._cache.get(key)
        if rule is None:
            rule = self._resolve(tag, vr, iod, nested, private_creator)
            self._cache[key] = rule
        return rule

    def plan(self, iod: str | None, nested: bool) -> dict[int, Rule] | None:
        """A per-context table of public tags to rules, filled as tags are met.

        Saves the tuple key of ``resolve`` on the hot path. None when an override selects by
        VR, because then the rule depends on more than the tag.
        """
        if self._has_vr_overrides:
            return None
        key = ("plan", iod, nested)
        table = self._cache.get(key)
        if table is None:
            table = self._cache[key] = {}
        return table

    @property
    def needs_private_creator(self) -> bool:
        """Whether any rule for a private element depends on its creator; when none does,
        every private element is removed without reading its block's creator."""
        flag = self._cache.get("needs_creator")
        if flag is None:
            flag = self._cache["needs_creator"] = (
                self.profile == "keep_all"
                or Option.RETAIN_SAFE_PRIVATE in self.options
                or any(o.private_creator is not None or o.tag is not None and (o.tag >> 16) & 1
                       or o.vr is not None for o in self.overrides)
            )
        return flag

    @property
    def _has_vr_overrides(self) -> bool:
        flag = self._cache.get("vr_overrides")
        if flag is None:
            flag = self._cache["vr_overrides"] = any(o.vr is not None for o in self.overrides)
        return flag

    def _resolve(
        self, tag: int, vr: str | None, iod: str | None, nested: bool, creator: str | None
    ) -> Rule:
        for i, ov in enumerate(self.overrides):
            if ov.matches(tag, vr, creator):
                return Rule(ov.action, f"override:{i}")
        group, elem = tag >> 16, tag & 0xFFFF
        if self.profile == "keep_all":
            return Rule(Action.KEEP, "profile:keep_all")
        if group % 2 == 1:
            return self._private(tag, vr, creator)
        if elem == 0 and group != 0x0002:
            return Rule(Action.REMOVE, "group-length")
        if self.profile == "minimal":
            if tag in minimal_keep_list():
                row = annex_e.exact_rows().get(tag)
                dvr = _dictionary_vr(tag)
                if row is None and date_net.covers(tag, dvr):
                    return Rule(date_net.rule_action(tag, dvr, self.options, iod, nested), date_net.SOURCE)
                act = Action.UID if (row and row.basic == "U" and not self.has(Option.RETAIN_UIDS)) else Action.KEEP
                return Rule(act, "profile:minimal")
            return Rule(Action.REMOVE, "profile:minimal")
        row = annex_e.exact_rows().get(tag)
        if row is None:
            row = _pattern_row(group, elem)
        if row is not None:
            return self._from_row(row, tag, iod, nested)
        dvr = _dictionary_vr(tag)
        if date_net.covers(tag, dvr):
            return Rule(date_net.rule_action(tag, dvr, self.options, iod, nested), date_net.SOURCE)
        if identifier_net.covers(tag, dvr):
            return Rule(identifier_net.rule_action(tag, iod, nested), identifier_net.SOURCE)
        if dictionary_has_tag(tag) or (0x6000 <= group <= 0x60FF) or (0x5000 <= group <= 0x50FF):
            return Rule(Action.KEEP, "default:standard-not-listed")
        return Rule(Action.REMOVE, "default:unknown-tag")

    def _private(self, tag: int, vr: str | None, creator: str | None) -> Rule:
        elem = tag & 0xFFFF
        if 0x0010 <= elem <= 0x00FF:
            # A private creator: kept only while its block keeps something (header.py prunes).
            if self.has(Option.RETAIN_SAFE_PRIVATE):
                return Rule(Action.KEEP, "option:retain_safe_private:creator")
            return Rule(Action.REMOVE, "annex-e:private")
        if self.has(Option.RETAIN_SAFE_PRIVATE) and creator:
            code = safe_private_action(tag, creator)
            if code == "K" and date_net.covers(tag, vr):
                # a kept private date is still a date of service: the net decides
                return Rule(date_net.rule_action(tag, str(vr), self.options, None, False, private=True),
                            date_net.SOURCE)
            if code is not None:
                return Rule(Action(code), "option:retain_safe_private")
        return Rule(Action.REMOVE, "annex-e:private")

    def _from_row(self, row: annex_e.Row, tag: int, iod: str | None, nested: bool) -> Rule:
        codes = [(o, c) for o, c in row.options.items() if o in self.options]
        if codes:
            opt, code = min(codes, key=lambda oc: annex_e.RETENTION[oc[1].rstrip("*")[0]])
            code = annex_e.resolve_compound(code, annex_e.requirement_type(tag, iod, nested))
            return Rule(Action(code), f"option:{opt.value}")
        code = annex_e.resolve_compound(row.basic, annex_e.requirement_type(tag, iod, nested))
        return Rule(Action(code), "annex-e")


@cache
def _patterns() -> list[tuple[int, int, int, int, annex_e.Row]]:
    """Rows with x wildcards (curves 50xx, overlays 60xx) as (mask, value) pairs."""
    out = []
    for key, row in annex_e.table().items():
        if "x" not in key:
            continue
        gmask = int("".join("0" if c == "x" else "f" for c in key[:4]), 16)
        emask = int("".join("0" if c == "x" else "f" for c in key[4:]), 16)
        gval = int(key[:4].replace("x", "0"), 16)
        evals = int(key[4:].replace("x", "0"), 16)
        out.append((gmask, gval, emask, evals, row))
    return out


def _pattern_row(group: int, elem: int) -> annex_e.Row | None:
    for gmask, gval, emask, evals, row in _patterns():
        if group & gmask == gval and elem & emask == evals and group % 2 == 0:
            return row
    return None


def _dictionary_vr(tag: int) -> str | None:
    try:
        return dictionary_VR(tag) if dictionary_has_tag(tag) else None
    except KeyError:
        return None


def describe_tag(tag: int) -> str:
    kw = keyword_for_tag(tag) if dictionary_has_tag(tag) else ""
    return kw or "(private or unknown)"
