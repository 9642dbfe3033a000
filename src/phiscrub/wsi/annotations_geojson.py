"""QuPath GeoJSON: a FeatureCollection, a list of Features, or one Feature.

Only ``properties`` is touched: geometry, ids, classification and measurements are left
as parsed (Python's float repr round-trips every double, so numbers come back with the
values they had). User-defined key/value maps (``metadata``) can hold anything, keys
included, so their listed keys go and the rest are cleaned, keys and values alike.
"""

from __future__ import annotations

import json
from typing import Any

from phiscrub.errors import CorruptFile
from phiscrub.wsi.annotations import Cleaner, field_lists, remove_names


def scrub_geojson(data: bytes, cleaner: Cleaner) -> tuple[bytes, dict]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CorruptFile("annotation: not valid GeoJSON (UTF-8 JSON)") from None
    features = _features(doc)
    spec = field_lists()["geojson"]
    clean_props = {p.lower() for p in spec["clean_properties"]}
    free_maps = {p.lower() for p in spec["free_maps"]}
    gone = remove_names()
    points = 0
    for feat in features:  # removals first: their values feed the cleaning of the rest
        props = feat.get("properties")
        if isinstance(props, dict):
            _remove(props, gone, cleaner, "properties")
            for key, value in props.items():
                if key.lower() in free_maps and isinstance(value, dict):
                    _remove(value, gone, cleaner, f"properties.{key.lower()}")
    for feat in features:
        props = feat.get("properties")
        if isinstance(props, dict):
            for key in list(props):
                low = key.lower()
                if low in clean_props and isinstance(props[key], str):
                    props[key] = cleaner.clean(f"properties.{low}", props[key])
                elif low in free_maps and isinstance(props[key], dict):
                    props[key] = _clean_map(props[key], cleaner, f"properties.{low}")
        points += _count_points(feat.get("geometry"))
    out = json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
    return out, cleaner.manifest("geojson", annotations=len(features), points=points)


def _features(doc: Any) -> list[dict]:
    if isinstance(doc, dict) and doc.get("type") == "FeatureCollection" and isinstance(doc.get("features"), list):
        feats = doc["features"]
    elif isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    elif isinstance(doc, list):
        feats = doc
    else:
        raise CorruptFile("annotation: JSON is not a GeoJSON Feature, FeatureCollection or list of Features")
    if not all(isinstance(f, dict) and f.get("type") == "Feature" for f in feats):
        raise CorruptFile("annotation: a GeoJSON feature list holds something that is not a Feature")
    return feats


def _remove(obj: dict, gone: frozenset[str], cleaner: Cleaner, where: str) -> None:
    for key in list(obj):
        if key.lower() in gone:
            value = obj.pop(key)
            for text in _strings(value):
                cleaner.learn(text)
            cleaner.removed(f"{where}.{key.lower()}")


def _clean_map(obj: dict, cleaner: Cleaner, where: str) -> dict:
    out = {}
    for key, value in obj.items():
        new_key = cleaner.clean(f"{where}.<key>", key)
        if new_key in out:  # two keys cleaned to the same text: keep both, numbered
            new_key = f"{new_key} ({len(out)})"
        out[new_key] = cleaner.clean(f"{where}.<value>", value) if isinstance(value, str) else _clean_any(value, cleaner, where)
    return out


def _clean_any(value: Any, cleaner: Cleaner, where: str) -> Any:
    if isinstance(value, str):
        return cleaner.clean(f"{where}.<value>", value)
    if isinstance(value, list):
        return [_clean_any(v, cleaner, where) for v in value]
    if isinstance(value, dict):
        return _clean_map(value, cleaner, where)
    return value


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    return []


def _count_points(geom: Any) -> int:
    if not isinstance(geom, dict):
        return 0
    if geom.get("type") == "GeometryCollection":
        return sum(_count_points(g) for g in geom.get("geometries") or [])
    return _count_coords(geom.get("coordinates"))


def _count_coords(c: Any) -> int:
    if isinstance(c, list) and c and all(isinstance(v, (int, float)) for v in c):
        return 1
    if isinstance(c, list):
        return sum(_count_coords(v) for v in c)
    return 0
