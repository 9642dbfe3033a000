"""Realistic small annotation files of each format, with PHI planted where each tool writes it.

Layouts follow what the tools write: ImageScope's Annotations/Annotation/Regions/Region/
Vertices, NDP.view's annotations/ndpviewstate/annotation/pointlist, QuPath's GeoJSON
FeatureCollection (classification, measurements, metadata) and ASAP's ASAP_Annotations.
"""

from __future__ import annotations

import json

AUTHOR = "Hildegard Vonnegut"
AUTHOR_LOGIN = "hvonnegut"
PATIENT = "Bartholomew Quincey"
MRN = "MRN 84736251"
STAMP = "2023-04-05T10:11:12"
EMAIL = "h.vonnegut@clinic-example.org"
PATH = r"C:\Slides\Quincey_Bartholomew_84736251.svs"
# free text where the author's name shows up again, beside generic identifiers
COMMENT = f"Margin checked by {AUTHOR} on 05/04/2023, {MRN}, mail {EMAIL}"
PLANTED = [AUTHOR, AUTHOR_LOGIN, MRN, "84736251", STAMP, EMAIL, PATH, "Quincey_Bartholomew", "Vonnegut", "hildegard"]

VERTICES = [("1024.5", "2048.25"), ("1100", "2050.125"), ("1090.75", "2199"), ("1001.0625", "2150.5")]
CLASSES = ["Tumor", "Stroma"]


def aperio_xml() -> bytes:
    verts = "\n".join(f'        <Vertex X="{x}" Y="{y}" Z="0"/>' for x, y in VERTICES)
    return f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!-- exported for {PATIENT} -->
<Annotations MicronsPerPixel="0.252100">
<Annotation Id="1" Name="Tumor {MRN}" ReadOnly="0" NameReadOnly="0" LineColorReadOnly="0" Incremental="0" Type="4"
 LineColor="65280" Visible="1" Selected="1" MarkupImagePath="{PATH}" MacroName="" Author="{AUTHOR}" Date="{STAMP}">
  <Attributes>
    <Attribute Name="Description" Id="0" Value="{COMMENT}"/>
  </Attributes>
  <Regions>
    <RegionAttributeHeaders>
      <AttributeHeader Id="9999" Name="Region" ColumnWidth="-1"/>
      <AttributeHeader Id="9997" Name="Length" ColumnWidth="-1"/>
      <AttributeHeader Id="9996" Name="Area" ColumnWidth="-1"/>
      <AttributeHeader Id="9998" Name="Text" ColumnWidth="-1"/>
    </RegionAttributeHeaders>
    <Region Id="1" Type="0" Zoom="0.5" Selected="0" ImageLocation="{PATH}" ImageFocus="-1" Length="1234.5" Area="56789.25"
     LengthMicrons="311.1" AreaMicrons="3606.7" Text="{COMMENT}" NegativeROA="0" InputRegionId="0" Analyze="1" DisplayId="1">
      <Attributes/>
      <Vertices>
{verts}
      </Vertices>
    </Region>
  </Regions>
  <Plots/>
</Annotation>
</Annotations>
""".encode("latin-1")


def ndpa() -> bytes:
    pts = "".join(f"<point><x>{int(float(x) * 1000)}</x><y>{int(float(y) * 1000)}</y></point>" for x, y in VERTICES)
    return f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<annotations>
  <ndpviewstate id="1">
    <title>Tumor area {PATIENT}</title>
    <details>{COMMENT}</details>
    <coordformat>nanometers</coordformat>
    <lens>2.5</lens>
    <x>-1234567</x>
    <y>7654321</y>
    <z>0</z>
    <showtitle>0</showtitle>
    <showhistogram>0</showhistogram>
    <showlineprofile>0</showlineprofile>
    <creator>{AUTHOR}</creator>
    <user>{AUTHOR_LOGIN}</user>
    <date>{STAMP}</date>
    <annotation type="freehand" displayname="AnnotateFreehand" color="#ff0000">
      <measuretype>0</measuretype>
      <closed>1</closed>
      <pointlist>{pts}</pointlist>
    </annotation>
  </ndpviewstate>
</annotations>
""".encode()


def geojson() -> bytes:
    ring = [[float(x), float(y)] for x, y in VERTICES] + [[float(VERTICES[0][0]), float(VERTICES[0][1])]]
    doc = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": "7f9e2b8c-0d5e-4c1a-9b7e-2f1a3c4d5e6f",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "annotation",
                    "name": f"Tumor {MRN}",
                    "classification": {"name": CLASSES[0], "color": [200, 0, 0]},
                    "isLocked": False,
                    "measurements": {"Area µm^2": 3606.7123456789, "Perimeter µm": 311.1, "Num Detections": 42},
                    "metadata": {"Author": AUTHOR, "CreatedAt": STAMP, "Note": COMMENT, PATIENT: "owner folder"},
                    "description": COMMENT,
                },
            },
            {
                "type": "Feature",
                "id": "1a2b3c4d-0000-4000-8000-000000000001",
                "geometry": {"type": "Point", "coordinates": [12.5, 99.0625]},
                "properties": {"objectType": "detection", "classification": {"name": CLASSES[1], "color": [0, 150, 0]},
                               "measurements": [{"name": "Nucleus: Area", "value": 33.5}], "user": AUTHOR_LOGIN},
            },
        ],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False).encode()


def asap_xml() -> bytes:
    coords = "\n".join(f'        <Coordinate Order="{i}" X="{x}" Y="{y}" />' for i, (x, y) in enumerate(VERTICES))
    return f"""<?xml version="1.0"?>
<ASAP_Annotations>
  <Annotations>
    <Annotation Name="{PATIENT} lesion" Type="Polygon" PartOfGroup="{CLASSES[0]}" Color="#F4FA58" Author="{AUTHOR}">
      <Coordinates>
{coords}
      </Coordinates>
    </Annotation>
  </Annotations>
  <AnnotationGroups>
    <Group Name="{CLASSES[0]}" PartOfGroup="None" Color="#64FE2E">
      <Attributes />
    </Group>
    <Group Name="{CLASSES[1]}" PartOfGroup="None" Color="#0000FF">
      <Attributes />
    </Group>
  </AnnotationGroups>
</ASAP_Annotations>
""".encode()


MAKERS = {"aperio_xml": aperio_xml, "ndpa": ndpa, "geojson": geojson, "asap_xml": asap_xml}
