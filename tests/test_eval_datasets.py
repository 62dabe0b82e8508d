"""Dataset loaders (CheXpert, NIH, plain), label mapping and bad-row reporting."""

import math

import pytest
from PIL import Image

from twofold.eval.datasets import DatasetError, load_dataset
from twofold.eval.labels import CHEXNET_LABELS, LabelMap, parse_label_map

LMAP = LabelMap(CHEXNET_LABELS)


def _images(root, names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 100).save(p)


def test_label_map_aliases_and_extra():
    assert LMAP.model_name("Pleural Effusion") == "Effusion"
    assert LMAP.model_name("pleural thickening") == "Pleural_Thickening"
    assert LMAP.model_name("CARDIOMEGALY") == "Cardiomegaly"
    assert LMAP.model_name("Support Devices") is None
    m = LabelMap(CHEXNET_LABELS, parse_label_map(["Lung Opacity=Infiltration"]))
    assert m.index("Lung Opacity") == CHEXNET_LABELS.index("Infiltration")
    with pytest.raises(ValueError, match="'Foo' is not a model output"):
        LabelMap(CHEXNET_LABELS, {"x": "Foo"})
    with pytest.raises(ValueError, match="DATASET_LABEL=MODEL_LABEL"):
        parse_label_map(["nonsense"])


CHEXPERT = (
    (
        "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Cardiomegaly,Edema,Pleural Effusion,"
        "Support Devices\n"
    )
    + """p1/view1.png,Male,60,Frontal,AP,,1.0,-1.0,0.0,1.0
p2/view1.png,Female,50,Frontal,PA,1.0,0.0,,-1.0,
p3/view1.png,Female,50,Frontal,PA,,2.0,,,
p4/view1.png,Male,70,Frontal,AP,,0.0,1.0,1.0,
p1/view1.png,Male,60,Frontal,AP,,1.0,-1.0,0.0,1.0
"""
)


@pytest.mark.parametrize(
    "policy,edema1,eff2", [("zeros", 0.0, 0.0), ("ones", 1.0, 1.0), ("ignore", None, None)]
)
def test_chexpert_uncertain_policies_and_bad_rows(tmp_path, policy, edema1, eff2):
    (tmp_path / "d.csv").write_text(CHEXPERT)
    _images(tmp_path, ["p1/view1.png", "p2/view1.png", "p3/view1.png"])  # p4 missing
    ds = load_dataset(tmp_path / "d.csv", "chexpert", tmp_path, LMAP, policy)
    assert [s.id for s in ds.samples] == ["p1/view1.png", "p2/view1.png"]
    s1, s2 = ds.samples
    assert s1.labels["Cardiomegaly"] == 1.0 and s1.labels["Effusion"] == 0.0
    assert s2.labels["Edema"] == 0.0  # blank = not mentioned = negative
    for got, want in ((s1.labels["Edema"], edema1), (s2.labels["Effusion"], eff2)):
        assert math.isnan(got) if want is None else got == want
    reasons = {b.line: b.reason for b in ds.bad_rows}
    assert set(reasons) == {4, 5, 6}
    assert "bad label value '2.0'" in reasons[4]
    assert "missing file" in reasons[5] and "p4/view1.png" in reasons[5]
    assert "duplicate" in reasons[6]
    assert ds.labels == ["Cardiomegaly", "Effusion", "Edema"]
    assert ds.unmapped == ["No Finding", "Support Devices"]


NIH = """Image Index,Finding Labels,Follow-up #,Patient ID
a.png,Effusion|Mass,0,1
b.png,No Finding,0,2
c.png,Efusion,0,3
d.png,Hernia,0,4
e.png,,0,5
"""


def test_nih_findings_and_unknown_label(tmp_path):
    (tmp_path / "d.csv").write_text(NIH)
    _images(tmp_path, ["a.png", "b.png", "c.png", "d.png", "e.png"])
    ds = load_dataset(tmp_path / "d.csv", "nih", tmp_path, LMAP)
    assert [s.id for s in ds.samples] == ["a.png", "b.png", "d.png"]
    a, b, d = ds.samples
    assert a.labels["Effusion"] == a.labels["Mass"] == 1.0 and a.labels["Nodule"] == 0.0
    assert sum(b.labels.values()) == 0 and len(b.labels) == 14
    assert d.labels["Hernia"] == 1.0
    bad = {b.id: b.reason for b in ds.bad_rows}
    assert bad["c.png"] == "unknown label 'Efusion'"
    assert "empty" in bad["e.png"]
    assert ds.labels == list(CHEXNET_LABELS)


def test_plain_csv(tmp_path):
    (tmp_path / "d.csv").write_text("path,Pneumonia,Mass\nx.png,1,0\ny.png,0,\nz.png,0,7\n")
    _images(tmp_path, ["x.png", "y.png", "z.png"])
    ds = load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP)
    assert [s.id for s in ds.samples] == ["x.png", "y.png"]
    assert math.isnan(ds.samples[1].labels["Mass"])
    assert ds.bad_rows[0].reason == "bad label value '7'"


def test_dataset_level_errors_name_the_fault(tmp_path):
    (tmp_path / "d.csv").write_text("path,Lung Opacity\nx.png,1\n")
    with pytest.raises(DatasetError, match="'Lung Opacity' match no model output"):
        load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP)
    with pytest.raises(DatasetError, match="'Finding Labels'"):
        load_dataset(tmp_path / "d.csv", "nih", tmp_path, LMAP)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(tmp_path / "nope.csv", "plain", tmp_path, LMAP)
    with pytest.raises(DatasetError, match="not a directory"):
        load_dataset(tmp_path / "d.csv", "plain", tmp_path / "no", LMAP)
    with pytest.raises(DatasetError, match="unknown dataset format"):
        load_dataset(tmp_path / "d.csv", "dicom", tmp_path, LMAP)


@pytest.mark.parametrize(
    "fmt,csv",
    [
        ("plain", "path,site,Pneumonia\nx.png,A,1\ny.png,B,0\nz.png,A,0\n"),
        ("chexpert", "Path,Sex,site,Edema\nx.png,M,A,1.0\ny.png,F,B,0.0\nz.png,F,A,\n"),
        ("nih", "Image Index,Finding Labels,Patient ID,site\nx.png,Edema,1,A\n"
                "y.png,No Finding,2,B\nz.png,Mass,3,A\n"),
    ],
)  # fmt: skip
def test_group_column_in_every_format(tmp_path, fmt, csv):
    (tmp_path / "d.csv").write_text(csv)
    _images(tmp_path, ["x.png", "y.png", "z.png"])
    ds = load_dataset(tmp_path / "d.csv", fmt, tmp_path, LMAP, group_column="site")
    assert [s.group for s in ds.samples] == ["A", "B", "A"] and ds.groups() == ["A", "B"]
    assert "site" not in ds.unmapped and ds.group_column == "site"
    with pytest.raises(DatasetError, match="'hospital' missing for --format .* --group-column"):
        load_dataset(tmp_path / "d.csv", fmt, tmp_path, LMAP, group_column="hospital")


def test_short_row_long_row_and_empty_group_are_bad_rows(tmp_path):
    text = "path,site,Pneumonia,Mass\nx.png,A,1,0\ny.png,B,0\nz.png,A,0,1,1\nw.png,,1,1\n"
    (tmp_path / "d.csv").write_text(text)
    _images(tmp_path, ["x.png", "y.png", "z.png", "w.png"])
    ds = load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP, group_column="site")
    assert [s.id for s in ds.samples] == ["x.png"]
    bad = {b.id: b.reason for b in ds.bad_rows}
    assert bad["y.png"] == "3 fields, fewer than the 4 of the header"  # not blank labels
    assert bad["z.png"] == "5 fields, more than the 4 of the header"
    assert bad["w.png"] == "empty 'site'"


def test_header_only_and_empty_csv_are_one_clear_error(tmp_path):
    (tmp_path / "d.csv").write_text("path,Pneumonia\n")
    with pytest.raises(DatasetError, match="has a header but no data rows"):
        load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP)
    (tmp_path / "d.csv").write_text("")
    with pytest.raises(DatasetError, match="is empty"):
        load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP)


def test_dataset_digest_changes_with_the_csv(tmp_path):
    (tmp_path / "d.csv").write_text("path,Pneumonia\nx.png,1\n")
    _images(tmp_path, ["x.png"])
    a = load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP).sha256
    (tmp_path / "d.csv").write_text("path,Pneumonia\nx.png,0\n")
    assert load_dataset(tmp_path / "d.csv", "plain", tmp_path, LMAP).sha256 != a
