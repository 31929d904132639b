"""Click-file readers: each tool's exact export layout, its quirks, counting and errors."""

import json
import re

import pytest

from pcam_core.data.click_formats import (FORMATS, ClickFileError, ParsedClicks, RawClick,
                                     detect_format, parse_clicks)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path, data):
    return write(path, json.dumps(data, indent=2))


def labelme_doc(shapes, image_path="tile_000.tif", height=80, width=96):
    return {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path,
            "imageData": None, "imageHeight": height, "imageWidth": width}


def labelme_point(label, x, y, **extra):
    shape = {"label": label, "points": [[x, y]], "group_id": None, "description": "",
             "shape_type": "point", "flags": {}, "mask": None}
    shape.update(extra)
    return shape


def qupath_feature(geometry, name="nucleus", uid="0b9f2c1e-1111-4c53-9a4e-000000000001"):
    properties = {"objectType": "annotation"}
    if name is not None:
        properties["classification"] = {"name": name, "color": [200, 0, 0]}
    return {"type": "Feature", "id": uid, "geometry": geometry, "properties": properties}


CVAT_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>7</id>
      <name>cells</name>
      <size>3</size>
      <mode>annotation</mode>
      <labels>
        <label><name>nucleus</name><color>#ff0000</color><type>points</type><attributes></attributes></label>
        <label><name>debris</name><color>#00ff00</color><type>any</type><attributes></attributes></label>
      </labels>
    </task>
    <dumped>2024-05-01 10:00:00.000000+00:00</dumped>
  </meta>
  <image id="0" name="plate1/tile_000.tif" width="96" height="80">
    <points label="nucleus" source="manual" occluded="0" points="10.50,20.25;30.00,40.00" z_order="0">
    </points>
    <box label="debris" source="manual" occluded="0" xtl="1.00" ytl="2.00" xbr="5.00" ybr="6.00" z_order="0">
    </box>
    <points label="debris" source="manual" occluded="0" points="96.00,5.00" z_order="0">
    </points>
    <polygon label="debris" source="manual" occluded="0" points="1.0,1.0;4.0,1.0;4.0,4.0" z_order="0">
    </polygon>
    <points label="nucleus" source="manual" occluded="0" points="abc,3" z_order="0">
    </points>
  </image>
  <image id="1" name="plate1/tile_001.tif" width="96" height="80">
  </image>
  <image id="2" name="tile_002.png" width="50" height="40">
    <points label="nucleus" source="manual" occluded="0" points="0.00,0.00" z_order="0">
    </points>
  </image>
</annotations>
"""


# ---------------------------------------------------------------------------- wtp

def test_wtp_values_rank_and_quirks(tmp_path):
    path = write_json(tmp_path / "points.json", {
        "2007_000032": [{"cls": 1, "x": 12.5, "y": 40, "rank": 1},
                        {"cls": 15.0, "x": 500, "y": 0, "rank": 2},
                        {"cls": 15, "x": 3, "y": 4}],
        "2007_000033": [],
        "2007_000039": "oops",
        "2007_000042": [7, {"cls": "1", "x": 1, "y": 1}, {"cls": 2.5, "x": 1, "y": 1},
                        {"cls": 1, "x": 1, "y": 1, "rank": 1.5}, {"cls": 1, "x": True, "y": 1},
                        {"cls": 1, "y": 1}, {"cls": 3, "x": 1.25, "y": 2.75, "rank": 3}],
    })
    parsed = parse_clicks(path)  # auto -> wtp
    assert isinstance(parsed, ParsedClicks)
    assert parsed.format == "wtp" and parsed.files == 1
    assert parsed.clicks == [
        RawClick("2007_000032", 12.5, 40.0, 1, "points.json:2007_000032[0]", rank=1),
        RawClick("2007_000032", 500.0, 0.0, 15, "points.json:2007_000032[1]", rank=2),
        RawClick("2007_000032", 3.0, 4.0, 15, "points.json:2007_000032[2]", rank=1),
        RawClick("2007_000042", 1.25, 2.75, 3, "points.json:2007_000042[6]", rank=3),
    ]
    assert all(type(c.label) is int and type(c.rank) is int and type(c.x) is float
               for c in parsed.clicks)
    assert parsed.malformed == ["points.json:2007_000039"] + [
        f"points.json:2007_000042[{k}]" for k in range(6)]
    assert parsed.empty_files == ["2007_000033"]
    assert parsed.non_point == [] and parsed.image_refs == []


def test_wtp_nan_and_infinity_are_malformed(tmp_path):
    path = write(tmp_path / "p.json",
                 '{"a": [{"cls": 1, "x": NaN, "y": 1}, {"cls": 1, "x": 2, "y": Infinity},'
                 ' {"cls": 1, "x": 1e400, "y": 1}, {"cls": 2, "x": 2, "y": 3}]}')
    parsed = parse_clicks(path, "wtp")
    assert parsed.malformed == ["p.json:a[0]", "p.json:a[1]", "p.json:a[2]"]
    assert parsed.clicks == [RawClick("a", 2.0, 3.0, 2, "p.json:a[3]", rank=1)]


# ---------------------------------------------------------------------------- csv

def test_csv_columns_any_order_quoting_bom_and_malformed_rows(tmp_path):
    path = tmp_path / "points.csv"
    path.write_bytes(("\ufeff Class ,X,Image,y,comment\r\n"
                      "nucleus,10.5,plate1/tile_000,20,ok\r\n"
                      "\r\n"
                      "\"cell, large\",96,tile_001.tif,0,\"multi\nline\"\r\n"
                      " 2 ,n/a,tile_002,1,\r\n"
                      "nucleus,3,tile_003\r\n"
                      "nucleus,inf,tile_004,1,\r\n"
                      ",1,tile_005,2,\r\n"
                      "nucleus,1,,2,\r\n"
                      "nucleus,4,tile_006,5,x,surplus\r\n"
                      "nucleus,4,tile_007,5,x,\r\n").encode("utf-8"))
    parsed = parse_clicks(path)
    assert parsed.format == "csv" and parsed.files == 1
    assert parsed.clicks == [
        RawClick("plate1/tile_000", 10.5, 20.0, "nucleus", "points.csv:2"),
        RawClick("tile_001.tif", 96.0, 0.0, "cell, large", "points.csv:4"),  # x == W kept
        RawClick("tile_005", 1.0, 2.0, None, "points.csv:9"),  # blank class = no class
        RawClick("tile_007", 4.0, 5.0, "nucleus", "points.csv:12"),  # trailing empty cell ok
    ]
    # line 6: non-numeric x; 7: too few fields; 8: inf; 10: empty image; 11: surplus cell
    assert parsed.malformed == ["points.csv:6", "points.csv:7", "points.csv:8",
                                "points.csv:10", "points.csv:11"]
    assert parsed.empty_files == [] and parsed.image_refs == [] and parsed.non_point == []


def test_csv_class_number_kept_as_stripped_string(tmp_path):
    path = write(tmp_path / "c.csv", "image,x,y,class\na, 1 , 2 , 3 \n")
    assert parse_clicks(path, "csv").clicks == [RawClick("a", 1.0, 2.0, "3", "c.csv:2")]


# ---------------------------------------------------------------------------- labelme

def test_labelme_folder_points_shapes_and_references(tmp_path):
    root = tmp_path / "labelme"
    write_json(root / "plate1" / "tile_000.json", labelme_doc([
        labelme_point("nucleus", 10.5, 20.25),
        {"label": "debris", "points": [[1, 1], [5, 1], [5, 5]], "group_id": None,
         "description": "", "shape_type": "polygon", "flags": {}, "mask": None},
        labelme_point("nucleus", 96, 80),  # == width/height: passed through
        {"label": "box", "points": [[1, 1], [5, 5]], "group_id": None, "description": "",
         "shape_type": "rectangle", "flags": {}, "mask": None},
        labelme_point("nucleus", 1, 2, points=[[1, 2], [3, 4]]),
        labelme_point("nucleus", "a", 2),
        labelme_point("nucleus", float("nan"), 2),
        "not a shape",
        labelme_point(" cell ", 7, 8),
    ], image_path="..\\images\\tile_000.tif"))
    write_json(root / "a.json", labelme_doc([labelme_point("nucleus", 3, 4)], image_path="a.jpg"))
    write_json(root / "empty.json", labelme_doc([
        {"label": "x", "points": [[0, 0], [1, 1]], "group_id": None, "description": "",
         "shape_type": "line", "flags": {}, "mask": None}], image_path="empty.png"))
    write(root / "notes.txt", "ignored")
    write_json(root / ".hidden" / "junk.json", {"unrelated": 1})
    assert detect_format(root) == "labelme"
    parsed = parse_clicks(root)
    assert parsed.format == "labelme" and parsed.files == 3
    assert parsed.image_refs == ["a", "empty", "plate1/tile_000"]
    assert parsed.empty_files == ["empty"]
    src = "labelme/plate1/tile_000.json:shapes"
    alt = "../images/tile_000"
    assert parsed.clicks == [
        RawClick("a", 3.0, 4.0, "nucleus", "labelme/a.json:shapes[0]"),
        RawClick("plate1/tile_000", 10.5, 20.25, "nucleus", f"{src}[0]", image_alt=alt),
        RawClick("plate1/tile_000", 96.0, 80.0, "nucleus", f"{src}[2]", image_alt=alt),
        RawClick("plate1/tile_000", 7.0, 8.0, "cell", f"{src}[8]", image_alt=alt),
    ]
    assert parsed.non_point == ["labelme/empty.json:shapes[0]", f"{src}[1]", f"{src}[3]"]
    assert parsed.malformed == [f"{src}[4]", f"{src}[5]", f"{src}[6]", f"{src}[7]"]


def test_labelme_single_file_uses_file_name(tmp_path):
    path = write_json(tmp_path / "tile_009.json",
                      labelme_doc([labelme_point("nucleus", 1.5, 2.5)], image_path="img_9.tif"))
    parsed = parse_clicks(path)
    assert parsed.format == "labelme" and parsed.image_refs == ["tile_009"]
    assert parsed.clicks == [RawClick("tile_009", 1.5, 2.5, "nucleus", "tile_009.json:shapes[0]",
                                      image_alt="img_9")]


# ---------------------------------------------------------------------------- cvat

def test_cvat_several_points_per_element_and_other_shapes(tmp_path):
    path = write(tmp_path / "annotations.xml", CVAT_XML)
    parsed = parse_clicks(path)
    assert parsed.format == "cvat" and parsed.files == 1
    base = "annotations.xml:image[name=plate1/tile_000.tif]"
    assert parsed.clicks == [
        RawClick("plate1/tile_000.tif", 10.5, 20.25, "nucleus", f"{base}/points[0][0]"),
        RawClick("plate1/tile_000.tif", 30.0, 40.0, "nucleus", f"{base}/points[0][1]"),
        RawClick("plate1/tile_000.tif", 96.0, 5.0, "debris", f"{base}/points[1]"),
        RawClick("tile_002.png", 0.0, 0.0, "nucleus", "annotations.xml:image[name=tile_002.png]/points[0]"),
    ]
    assert parsed.non_point == [f"{base}/box[0]", f"{base}/polygon[0]"]
    assert parsed.malformed == [f"{base}/points[2]"]
    assert parsed.empty_files == ["plate1/tile_001.tif"]
    assert parsed.image_refs == []


# ---------------------------------------------------------------------------- napari

def test_napari_row_column_order_and_half_pixel_shift(tmp_path):
    root = tmp_path / "napari"
    write(root / "plate1" / "tile_000.csv",
          "index,axis-0,axis-1,label,confidence\n"
          "0,19.5,9.5,nucleus,0.9\n"
          "1,0.0,95.5,debris,0.1\n"
          "2,abc,1.0,nucleus,1\n"
          "3,-0.5,-0.5,,1\n")
    write(root / "tile_001.csv", "index,axis-0,axis-1,label\n")
    assert detect_format(root) == "napari"
    parsed = parse_clicks(root)
    src = "napari/plate1/tile_000.csv"
    assert parsed.format == "napari" and parsed.files == 2
    assert parsed.clicks == [
        RawClick("plate1/tile_000", 10.0, 20.0, "nucleus", f"{src}:2"),
        RawClick("plate1/tile_000", 96.0, 0.5, "debris", f"{src}:3"),  # x == W passed on
        RawClick("plate1/tile_000", 0.0, 0.0, None, f"{src}:5"),
    ]
    assert parsed.malformed == [f"{src}:4"]
    assert parsed.image_refs == ["plate1/tile_000", "tile_001"]
    assert parsed.empty_files == ["tile_001"]


def test_napari_custom_class_column_and_missing_one(tmp_path):
    path = write(tmp_path / "img.csv", "index,axis-0,axis-1,cell_type\n0,1,2,tumour\n")
    assert parse_clicks(path, "napari", class_column="cell_type").clicks == [
        RawClick("img", 2.5, 1.5, "tumour", "img.csv:2")]
    assert parse_clicks(path, "napari").clicks == [RawClick("img", 2.5, 1.5, None, "img.csv:2")]


# ---------------------------------------------------------------------------- qupath

def test_qupath_collection_list_multipoint_and_unclassified(tmp_path):
    root = tmp_path / "qupath"
    write_json(root / "plate1" / "tile_000.tif.geojson", {"type": "FeatureCollection", "features": [
        qupath_feature({"type": "Point", "coordinates": [10.25, 20.75]}),
        qupath_feature({"type": "MultiPoint", "coordinates": [[1, 2], [96, 80]]}, name="debris"),
        qupath_feature({"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 4], [0, 0]]]}),
        qupath_feature({"type": "Point", "coordinates": [5]}),
        qupath_feature({"type": "Point", "coordinates": [5, 6]}, name=None),
        qupath_feature({"type": "MultiPoint", "coordinates": [[1, 2], [3, "x"]]}),
    ]})
    write_json(root / "tile_001.png.json", [  # older QuPath: bare list of features
        qupath_feature({"type": "Point", "coordinates": [3.5, 4.5]}, name="nucleus"),
        qupath_feature({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
    ])
    assert detect_format(root) == "qupath"
    parsed = parse_clicks(root)
    src = "qupath/plate1/tile_000.tif.geojson:features"
    assert parsed.format == "qupath" and parsed.files == 2
    assert parsed.image_refs == ["plate1/tile_000.tif", "tile_001.png"]
    assert parsed.clicks == [
        RawClick("plate1/tile_000.tif", 10.25, 20.75, "nucleus", f"{src}[0]"),
        RawClick("plate1/tile_000.tif", 1.0, 2.0, "debris", f"{src}[1][0]"),
        RawClick("plate1/tile_000.tif", 96.0, 80.0, "debris", f"{src}[1][1]"),
        RawClick("plate1/tile_000.tif", 5.0, 6.0, None, f"{src}[4]"),
        RawClick("tile_001.png", 3.5, 4.5, "nucleus", "qupath/tile_001.png.json:features[0]"),
    ]
    assert parsed.non_point == [f"{src}[2]", "qupath/tile_001.png.json:features[1]"]
    assert parsed.malformed == [f"{src}[3]", f"{src}[5]"]
    assert parsed.empty_files == []


def test_qupath_single_feature_file(tmp_path):
    path = write_json(tmp_path / "tile_000.tif.geojson",
                      qupath_feature({"type": "Point", "coordinates": [1, 2]}))
    parsed = parse_clicks(path)
    assert parsed.format == "qupath" and parsed.image_refs == ["tile_000.tif"]
    assert parsed.clicks == [RawClick("tile_000.tif", 1.0, 2.0, "nucleus",
                                      "tile_000.tif.geojson:features[0]")]


# ---------------------------------------------------------------------------- detection

@pytest.mark.parametrize("name, content, expected", [
    ("p.json", {"a": [{"cls": 1, "x": 1, "y": 1}]}, "wtp"),
    ("p.json", {"a": [], "b": "bad value"}, "wtp"),
    ("p.json", labelme_doc([]), "labelme"),
    ("p.json", {"type": "FeatureCollection", "features": []}, "qupath"),
    ("p.json", {"type": "Feature", "geometry": {"type": "Point", "coordinates": [1, 2]}}, "qupath"),
    ("p.json", [{"type": "Feature", "geometry": None}], "qupath"),
    ("p.geojson", {"type": "FeatureCollection", "features": []}, "qupath"),
    ("p.csv", "image,x,y,class\n", "csv"),
    ("p.csv", "index,axis-0,axis-1,label\n", "napari"),
    ("p.xml", CVAT_XML, "cvat"),
])
def test_detect_format_of_each_file(tmp_path, name, content, expected):
    path = tmp_path / name
    write(path, content if isinstance(content, str) else json.dumps(content))
    assert detect_format(path) == expected
    assert detect_format(str(path)) == expected


def test_explicit_format_overrides_extension(tmp_path):
    path = write(tmp_path / "clicks.txt", "image,x,y,class\na,1,2,3\n")
    with pytest.raises(ClickFileError, match=r"clicks\.txt.*extension"):
        parse_clicks(path)
    assert parse_clicks(path, "CSV").clicks == [RawClick("a", 1.0, 2.0, "3", "clicks.txt:2")]
    assert set(FORMATS) == {"wtp", "csv", "labelme", "cvat", "napari", "qupath"}


# ---------------------------------------------------------------------------- errors

def error_of(path, fmt="auto", **kwargs) -> str:
    with pytest.raises(ClickFileError) as info:
        parse_clicks(path, fmt, **kwargs)
    assert isinstance(info.value, ValueError)
    return str(info.value)


def test_invalid_json_names_file_and_line(tmp_path):
    path = write(tmp_path / "broken.json", '{\n  "a": [\n    {"cls": 1,, "x": 2}\n  ]\n}\n')
    message = error_of(path)
    assert "broken.json" in message and "line 3" in message and "invalid JSON" in message
    assert "line 3" in error_of(path, "wtp")


def test_invalid_xml_names_file_and_line(tmp_path):
    path = write(tmp_path / "ann.xml", "<annotations>\n  <image name='a'>\n  </imag>\n</annotations>")
    message = error_of(path, "cvat")
    assert "ann.xml" in message and re.search(r"line 3, column \d+", message)


def test_xml_with_wrong_root_or_video_tracks(tmp_path):
    path = write(tmp_path / "voc.xml", "<annotation><object/></annotation>")
    assert re.search(r"voc\.xml.*<annotation>.*<annotations>", error_of(path))
    video = write(tmp_path / "video.xml", "<annotations><version>1.1</version>"
                  "<track id='0' label='a'><points frame='0' points='1,2'/></track></annotations>")
    assert "video.xml" in error_of(video) and "video" in error_of(video, "cvat")


@pytest.mark.parametrize("fmt, data, problem", [
    ("wtp", [1, 2], "JSON object"),
    ("labelme", {"shapes": {"a": 1}}, "shapes"),
    ("labelme", [1], "shapes"),
    ("qupath", {"type": "Polygon"}, "FeatureCollection"),
    ("qupath", {"type": "FeatureCollection", "features": None}, "features"),
    ("auto", {"a": 1}, "unknown JSON click layout"),
    ("auto", [1, 2], "unknown JSON click layout"),
])
def test_wrong_top_level_structure(tmp_path, fmt, data, problem):
    path = write_json(tmp_path / "bad_top.json", data)
    message = error_of(path, fmt)
    assert "bad_top.json" in message and problem in message


def test_csv_header_errors(tmp_path):
    missing = write(tmp_path / "missing.csv", "\nimage,x,y\na,1,2\n")
    message = error_of(missing)
    assert "missing.csv" in message and "line 2" in message
    message = error_of(missing, "csv")
    assert "missing.csv" in message and "line 2" in message and "class" in message
    duplicate = write(tmp_path / "dup.csv", "image,x,y,class,X\na,1,2,3,4\n")
    assert re.search(r"dup\.csv: line 1: column 'x' appears 2 times", error_of(duplicate))
    empty = write(tmp_path / "empty.csv", "\n\n")
    assert "empty.csv" in error_of(empty, "csv")
    huge = write(tmp_path / "huge.csv", "image,x,y,class\na,1,2,3\nb,1,2," + "c" * 200_000 + "\n")
    assert re.search(r"huge\.csv: line 3: invalid CSV", error_of(huge, "csv"))


def test_csv_not_utf8_names_line(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"image,x,y,class\na,1,2,caf\xe9\n")
    assert re.search(r"latin\.csv: line 2: not UTF-8", error_of(path, "csv"))


def test_napari_3d_layer_and_missing_axes(tmp_path):
    path = write(tmp_path / "stack.csv", "index,axis-0,axis-1,axis-2,label\n0,1,2,3,a\n")
    message = error_of(path)
    assert "stack.csv" in message and "line 1" in message and "3 axis columns" in message
    no_axis = write(tmp_path / "flat.csv", "index,axis-0,label\n0,1,a\n")
    assert "flat.csv" in error_of(no_axis, "napari") and "axis-1" in error_of(no_axis, "napari")


def test_folder_errors(tmp_path):
    mixed = tmp_path / "mixed"
    write_json(mixed / "a.json", labelme_doc([]))
    write(mixed / "sub" / "b.csv", "index,axis-0,axis-1,label\n")
    message = error_of(mixed)
    assert "mixed" in message and "labelme: a.json" in message and "napari: sub/b.csv" in message
    with pytest.raises(ClickFileError, match="mixes"):
        detect_format(mixed)

    empty = tmp_path / "empty"
    write(empty / "image.tif", "not a click file")
    assert "empty" in error_of(empty) and "no click files" in error_of(empty)
    assert "no click files" in error_of(empty, "qupath")

    single = tmp_path / "single"
    write_json(single / "points.json", {"a": []})
    assert "one-file format" in error_of(single)
    assert "give the file" in error_of(single, "wtp")

    unknown = tmp_path / "unknown"
    write_json(unknown / "tile.json", labelme_doc([]))
    write_json(unknown / "classes.json", {"names": "nucleus"})
    message = error_of(unknown)
    assert "classes.json" in message and "unknown JSON click layout" in message


def test_unknown_format_and_missing_path(tmp_path):
    path = write_json(tmp_path / "p.json", {"a": []})
    message = error_of(path, "pascal")
    assert "p.json" in message and "'pascal'" in message
    missing = tmp_path / "nowhere.json"
    assert "nowhere.json" in error_of(missing) and "no such" in error_of(missing, "wtp")
    with pytest.raises(ClickFileError, match="nowhere.json"):
        detect_format(missing)


def test_explicit_format_mismatch_is_an_error_naming_the_file(tmp_path):
    root = tmp_path / "clicks"
    write_json(root / "t.json", labelme_doc([labelme_point("a", 1, 2)]))
    message = error_of(root, "qupath")
    assert "t.json" in message and "QuPath" in message
