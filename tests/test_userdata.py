"""Your own data: CSV import converts every image under one policy and names the problem in every error."""
import numpy as np
import pytest
from PIL import Image

from visfuse_utils import data as D
from visfuse_utils import userdata as U


def _write_csv(folder, rows, header="image,text,label", encoding="utf-8"):
    path = folder / "data.csv"
    path.write_bytes(("\n".join([header] + rows) + "\n").encode(encoding))
    return path


@pytest.fixture()
def images(tmp_path):
    Image.new("RGB", (40, 30), (200, 10, 10)).save(tmp_path / "a.png")
    Image.new("L", (20, 50), 90).save(tmp_path / "b.jpg")
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(tmp_path / "c.png")
    return tmp_path


def test_load_csv_converts_and_resizes(images):
    path = _write_csv(images, ["a.png,red thing,cat", "b.jpg,grey thing,dog", "c.png,clear thing,dog"])
    d = U.load_csv(path, image_size=24)
    assert d.images.shape == (3, 1, 24, 24) and d.images.dtype == np.uint8
    assert d.class_names == ["cat", "dog"] and d.labels.tolist() == [0, 1, 1]
    assert d.images[2].min() == 255  # transparency flattened onto white
    assert d.masks is None and not d.has_ground_truth
    rgb = U.load_csv(path, image_size=24, channels=3)
    assert rgb.images.shape == (3, 3, 24, 24)


@pytest.mark.parametrize("rows, header, match", [
    (["a.png,x,cat", "b.jpg,y,dog"], "img,text,label", r"no column 'image'"),
    (["a.png,x,cat", "missing.png,y,dog"], "image,text,label", r"row 2 \(line 3\).*does not exist"),
    (["a.png,x,cat", "b.jpg,,dog"], "image,text,label", r"row 2.*'text'.*empty"),
    (["a.png,x,cat", "b.jpg,y,"], "image,text,label", r"row 2.*'label'.*missing"),
    (["a.png,x,cat", "b.jpg,y,cat"], "image,text,label", r"only one class .*add rows of another class"),
    (["a.png,x,cat", "../outside.png,y,dog"], "image,text,label", r"row 2.*outside the image root"),
    (["a.png,x,cat", ",y,dog"], "image,text,label", r"row 2.*no image file"),
])
def test_load_csv_errors_name_the_problem(images, rows, header, match):
    path = _write_csv(images, rows, header)
    with pytest.raises(D.DataError, match=match) as err:
        U.load_csv(path)
    assert str(path) in str(err.value)


def test_load_csv_corrupt_image_and_encoding(images):
    (images / "bad.png").write_bytes(b"not an image at all")
    path = _write_csv(images, ["a.png,x,cat", "bad.png,y,dog"])
    with pytest.raises(D.DataError, match=r"bad.png cannot be read as an image"):
        U.load_csv(path)
    path = _write_csv(images, ["a.png,caf\u00e9,cat", "b.jpg,y,dog"], encoding="latin-1")
    with pytest.raises(D.DataError, match="not valid UTF-8"):
        U.load_csv(path)
    with pytest.raises(D.DataError, match="does not exist"):
        U.load_csv(images / "nope.csv")
    assert issubclass(D.DataError, ValueError)


def test_load_data_dispatches(images):
    path = _write_csv(images, ["a.png,x,cat", "b.jpg,y,dog"])
    assert D.load_data(str(path), n=0, image_size=16).images.shape == (2, 1, 16, 16)


def test_data_that_cannot_work_names_the_file_and_the_fix(images):
    """Too few samples for the split, and a scan side the CNN cannot take: DataErrors, not library tracebacks."""
    rows = [f"{f},note {i},{c}" for i, (f, c) in enumerate(zip(["a.png", "b.jpg", "c.png"] * 3,
                                                             ["cat", "dog", "emu"] * 3))]
    path = _write_csv(images, rows)
    few = U.load_csv(path, image_size=16)
    with pytest.raises(D.DataError, match=r"9 samples are too few for a stratified split with 3 classes.*Add "
                                          r"samples \(at least 20\)") as err:
        D.split(few)
    assert str(path) in str(err.value)
    with pytest.raises(D.DataError, match=r"image_size=4: .*at least 8"):
        U.load_csv(path, image_size=4)
    with pytest.raises(D.DataError, match=r"IMAGE_SIZE=4"):
        D.load_data(str(path), n=0, image_size=4)
    with pytest.raises(D.DataError, match=r"CHANNELS=2: set 1 .* or 3"):
        D.load_data(str(path), n=0, image_size=16, channels=2)
    with pytest.raises(D.DataError, match=r"SynthScan's scans are grayscale; set CHANNELS = 1"):
        D.load_data("synthscan", n=30, image_size=16, channels=3)
    assert D.load_data(str(path), n=0, image_size=16, channels=3).images.shape == (9, 3, 16, 16)
    with pytest.raises(D.DataError, match=r"rule='consistency' with DATA=.*labels are its own"):
        D.load_data(str(path), n=0, image_size=16, rule="consistency")
    assert D.load_data("synthscan", n=30, image_size=16, rule="consistency").class_names == ["consistent",
                                                                                              "inconsistent"]


def test_a_class_too_rare_to_split_is_named_with_the_counts(images):
    """Two samples of one class cannot reach train, validation and test: the error names the file and the class."""
    rows = [f"a.png,note {i},common" for i in range(30)] + ["b.jpg,x,rare", "b.jpg,y,rare"]
    path = _write_csv(images, rows)
    with pytest.raises(D.DataError, match=r"at least 3 samples.*'rare': 2.*Add samples of 'rare' or merge it") as err:
        D.split(U.load_csv(path, image_size=16))
    assert str(path) in str(err.value)


def test_class_names_sort_integers_first_and_odd_digits_as_text():
    names = ["b", "10", "-2", "2", "A", "²", "--1", "٣"]
    assert sorted(names, key=U.class_order) == ["-2", "2", "10", "--1", "A", "b", "²", "٣"]
