"""Your own images: ``train --data`` on a ``.npz`` and on a folder of class folders, ``predict``
and ``evaluate`` from the shell, and every kind of bad data as one line and exit status 2.

The commands run in this process (``cli.main``), on NumPy: the numpy session only.
"""

import json

import numpy as np
import pytest

import tinycnn_xp as tc
from tinycnn_xp import checkpoint, datafiles
from tinycnn_xp.cli import main
from tinycnn_xp.data import make_dataset_bundle

QUICK = ["--quiet", "--sweep-epochs", "0", "--no-figures"]


@pytest.fixture
def numpy_only(backend):
    if backend.NAME != "numpy":
        pytest.skip("the command line trains on NumPy here: the numpy session only")


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lines_npz(path, **extra):
    """The chapter's line patterns as uint8 images (n, 8, 8) with x and y, and class names."""
    x_train, y_train, x_val, y_val, names = make_dataset_bundle()
    x = np.concatenate([x_train, x_val])[:, 0]
    y = np.concatenate([y_train, y_val]).astype(np.int16)  # any integer dtype
    arrays = {"x": (x * 255).round().astype(np.uint8), "y": y, "class_names": np.array(names)}
    np.savez(path, **{**arrays, **extra})
    return path


def image_folder(root, mode="L", size=(12, 12), per_class=8, rgb_one=False):
    """root/<class>/<k>.png: bright vertical, horizontal or diagonal bars on noise, with a hidden
    file and a text file that are skipped."""
    from PIL import Image
    rng = np.random.default_rng(0)
    height, width = size
    for label, name in enumerate(("diagonal", "horizontal", "vertical")):
        folder = root / name
        folder.mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 60, size=(height, width)).astype(np.uint8)
            shift = k % 3
            if name == "vertical":
                pixels[:, width // 2 - 1 + shift - 1] = 255
            elif name == "horizontal":
                pixels[height // 2 - 1 + shift - 1, :] = 255
            else:
                np.fill_diagonal(pixels, 255)
            image = Image.fromarray(pixels, mode="L")
            if mode == "RGB" or (rgb_one and label == 0 and k == 0):
                image = image.convert("RGB")
            image.save(folder / f"{k:02d}.png")
    (root / "vertical" / ".DS_Store").write_bytes(b"\0\1")
    (root / "vertical" / "notes.txt").write_text("not an image")
    return root


def test_train_predict_evaluate_on_a_npz(numpy_only, here, capsys):
    lines_npz(here / "lines.npz")
    assert main(["train", "--data", "lines.npz", "--epochs", "40", "--lr", "0.12",
                 "--batch-size", "18", "--momentum", "0", "--out", "run", *QUICK]) == 0
    out = capsys.readouterr().out
    assert "data lines.npz: 216 training and 54 validation images of 1x8x8, 3 classes" in out
    model = tc.Sequential.load(here / "run" / "model.npz")
    assert model.conv.weights.dtype == np.float32  # own data: float32 unless --dtype
    meta = checkpoint.load_meta(here / "run" / "model.npz")
    assert meta["data"]["class_names"] == ["vertical", "horizontal", "diagonal"]
    assert meta["data"]["image_size"] == [8, 8] and meta["data"]["channels"] == 1
    assert len(meta["data"]["fingerprint"]) == 64 and "dataset" not in meta
    rows = (here / "run" / "history.csv").read_text().splitlines()
    assert rows[0] == "epoch,train_loss,val_loss,train_acc,val_acc,lr,seconds" and len(rows) == 41

    np.savez(here / "new.npz", x=np.load(here / "lines.npz")["x"][:5])
    assert main(["predict", "run/model.npz", "new.npz", "--format", "json"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    truth = np.load(here / "lines.npz")["y"][:5]
    assert [p["input"] for p in predictions] == [f"new.npz[{i}]" for i in range(5)]
    names = ["vertical", "horizontal", "diagonal"]
    assert [p["class"] for p in predictions] == [names[k] for k in truth]
    assert all(0.34 < p["probability"] <= 1.0 for p in predictions)

    assert main(["evaluate", "run/model.npz", "--data", "lines.npz", "--out", "eval"]) == 0
    report = capsys.readouterr().out
    assert "on the 270 images (x) of lines.npz" in report and "accuracy 100.0% (270/270)" in report
    saved = json.loads((here / "eval" / "evaluation.json").read_text())
    assert saved["accuracy"] == 1.0 and np.trace(saved["confusion"]) == 270


def test_a_train_and_validation_npz_is_evaluated_on_its_validation_part(numpy_only, here, capsys):
    x_train, y_train, x_val, y_val, _ = make_dataset_bundle()
    np.savez(here / "split.npz", x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val)
    assert main(["train", "--data", "split.npz", "--epochs", "30", "--lr", "0.12",
                 "--batch-size", "18", "--out", "run", *QUICK]) == 0
    assert "180 training and 90 validation images" in capsys.readouterr().out
    assert main(["evaluate", "run/model.npz", "--data", "split.npz"]) == 0
    out = capsys.readouterr().out
    assert "the 90 validation images (x_val) of split.npz" in out
    # classes without names are numbers
    assert checkpoint.load_meta(here / "run" / "model.npz")["data"]["class_names"] == ["0", "1", "2"]


@pytest.mark.parametrize("mode", ["L", "RGB", "mixed"])
def test_train_predict_evaluate_on_an_image_folder(numpy_only, here, capsys, mode):
    pytest.importorskip("PIL", reason="image folders need Pillow (the images extra)")
    image_folder(here / "photos", mode="RGB" if mode == "RGB" else "L", rgb_one=mode == "mixed")
    assert main(["train", "--data", "photos", "--epochs", "60", "--lr", "0.1", "--out", "run",
                 *QUICK]) == 0
    out = capsys.readouterr().out
    channels = 1 if mode == "L" else 3  # grayscale only if every image is
    assert f"images of {channels}x12x12, 3 classes" in out
    assert "skipped 2 entries that are not images" in out
    meta = checkpoint.load_meta(here / "run" / "model.npz")["data"]
    assert meta["class_names"] == ["diagonal", "horizontal", "vertical"]  # sorted folder names
    assert meta["channels"] == channels and meta["image_size"] == [12, 12]
    model = tc.Sequential.load(here / "run" / "model.npz")
    assert model.input_shape == (channels, 12, 12)

    assert main(["predict", "run/model.npz", "photos/vertical/00.png", "photos/horizontal",
                 "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == "input,class,probability" and len(rows) == 1 + 1 + 8
    assert rows[1].startswith("photos/vertical/00.png,")
    assert main(["evaluate", "run/model.npz", "--data", "photos"]) == 0
    report = capsys.readouterr().out
    accuracy = float(report.split("accuracy ")[1].split("%")[0])
    assert "the 24 images of photos" in report and accuracy >= 80.0, report


def test_a_folder_is_resized_to_image_size(numpy_only, here, capsys):
    pytest.importorskip("PIL", reason="image folders need Pillow (the images extra)")
    image_folder(here / "photos", size=(80, 70), per_class=3)
    assert main(["train", "--data", "photos", "--epochs", "1", "--out", "run", *QUICK]) == 2
    line = capsys.readouterr().err.strip()
    assert "is 80x70, larger than 64x64: pass image_size (--image-size HxW)" in line
    assert "MiB" in line and "\n" not in line
    assert main(["train", "--data", "photos", "--image-size", "16x14", "--epochs", "1",
                 "--out", "run", *QUICK]) == 0
    assert "images of 1x16x14" in capsys.readouterr().out


def test_presets_are_sized_for_the_images():
    model = tc.make_model("tiny", num_classes=4, input_shape=(3, 28, 28))
    assert type(model) is tc.Sequential and model.input_shape == (3, 28, 28)
    assert sorted(model.layers[-1].weights.shape) == [4, 3 * 13 * 13]  # conv 3x3, pool 2: 13x13x3
    assert type(tc.make_model("tiny")) is tc.TinyCNN  # the chapter's 8x8 class
    assert tc.make_model("vgg", num_classes=10).parameter_count == 8410  # as in 0.2
    with pytest.raises(ValueError, match="input_shape: the 'deep' preset needs images of at least 6x6"):
        tc.make_model("deep", input_shape=(1, 5, 5))


def write(path, **arrays):
    np.savez(path, **arrays)
    return path.name


def bad_cases(tmp):
    good_x = np.zeros((10, 8, 8), np.float32)
    good_y = np.arange(10) % 2
    return [
        ("rank", write(tmp / "a.npz", x=np.zeros((10, 8)), y=good_y),
         "entry 'x': expected images (n, height, width) or (n, channels, height, width)"),
        ("float labels", write(tmp / "b.npz", x=good_x, y=good_y.astype(float)),
         "entry 'y': expected integer labels (n,), got float64"),
        ("label out of range", write(tmp / "c.npz", x=good_x, y=good_y * 5,
                                     class_names=np.array(["a", "b"])),
         "entry 'y' has label 5, but 'class_names' names 2 classes"),
        ("NaN", write(tmp / "d.npz", x=np.full((10, 8, 8), np.nan), y=good_y),
         "entry 'x': holds NaN or infinite pixels"),
        ("one class", write(tmp / "e.npz", x=good_x, y=np.zeros(10, int)),
         "the training images hold 1 class(es); a classifier needs at least two"),
        ("mixed sizes", write(tmp / "f.npz", x_train=good_x, y_train=good_y,
                              x_val=np.zeros((4, 6, 6)), y_val=good_y[:4]),
         "the images differ in size"),
        ("objects", write(tmp / "g.npz", x=np.array([None] * 10, dtype=object), y=good_y),
         "entry 'x' holds Python objects"),
        ("no arrays", write(tmp / "h.npz", images=good_x),
         "expected arrays x_train and y_train (and optionally x_val, y_val), or x and y"),
        ("labels count", write(tmp / "i.npz", x=good_x, y=good_y[:7]),
         "entry 'y': 7 labels for the 10 images of 'x'"),
        ("not a file", "missing.npz", "missing.npz: no such file or folder"),
    ]


def test_bad_npz_data_is_one_line_and_status_2(numpy_only, here, capsys):
    for name, path, words in bad_cases(here):
        assert main(["train", "--data", path, "--epochs", "1", "--out", "run", *QUICK]) == 2, name
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"tinycnn-xp train: {path}") and words in err and "\n" not in err, (name, err)
        assert not (here / "run").exists()  # refused before anything is written


def test_bad_image_folders_are_one_line_and_status_2(numpy_only, here, capsys):
    pytest.importorskip("PIL", reason="image folders need Pillow (the images extra)")
    image_folder(here / "empty")
    for png in (here / "empty" / "horizontal").iterdir():
        png.unlink()
    image_folder(here / "broken")
    (here / "broken" / "vertical" / "03.png").write_bytes(b"\x89PNG not really")
    (here / "one").mkdir()
    (here / "one" / "only").mkdir()
    for path, words in [("empty", "the class folder 'horizontal' holds no PNG or JPEG image"),
                        ("broken", "03.png: cannot be decoded as an image"),
                        ("one", "expected one folder of images per class, at least 2; found 1")]:
        assert main(["train", "--data", path, "--epochs", "1", "--out", "run", *QUICK]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err


def test_data_is_not_taken_for_dataset_and_excludes_it(numpy_only, here, capsys):
    lines_npz(here / "x.npz")
    with pytest.raises(SystemExit) as stop:  # argparse: no prefix matching
        main(["train", "--dat", "x.npz"])
    assert stop.value.code == 2
    with pytest.raises(SystemExit):
        main(["train", "--data", "x.npz", "--dataset", "lines"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_resuming_needs_the_same_data(numpy_only, here, capsys):
    lines_npz(here / "a.npz")
    lines_npz(here / "b.npz", y=np.roll(np.load(here / "a.npz")["y"], 1))
    assert main(["train", "--data", "a.npz", "--epochs", "2", "--out", "run", *QUICK]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", "run/model.npz", "--epochs", "4", "--out", "run", *QUICK]) == 2
    assert "was trained on your own data: pass --data PATH again" in capsys.readouterr().err
    assert main(["train", "--resume", "run/model.npz", "--data", "b.npz", "--epochs", "4",
                 "--out", "run", *QUICK]) == 2
    assert "was trained on other data (fingerprint" in capsys.readouterr().err
    assert main(["train", "--resume", "run/model.npz", "--data", "a.npz", "--epochs", "4",
                 "--out", "run", *QUICK]) == 0
    assert len(checkpoint.load_history(here / "run" / "model.npz")["train_loss"]) == 4


def test_predict_refuses_what_it_cannot_read(numpy_only, here, capsys):
    assert main(["train", "--epochs", "1", "--out", "run", *QUICK]) == 0  # the line patterns
    capsys.readouterr()
    np.savez(here / "big.npz", x=np.zeros((2, 1, 9, 9)))
    for inputs, words in [(["nothing.png"], "nothing.png: no such file or folder"),
                          (["big.npz"], "entry 'x' holds images (1, 9, 9); the model was trained "
                                        "on (1, 8, 8)")]:
        assert main(["predict", "run/model.npz", *inputs]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err, err
    np.savez(here / "ok.npz", x=make_dataset_bundle()[2][:3])
    assert main(["predict", "run/model.npz", "ok.npz"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert [row.split()[0] for row in rows] == ["ok.npz[0]", "ok.npz[1]", "ok.npz[2]"]
    assert all(row.split()[1] in tc.CLASS_NAMES and 0 < float(row.split()[2]) <= 1 for row in rows)


def test_read_images_keeps_the_order_given(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 8, 8)))
    np.savez(tmp_path / "b.npz", x=np.ones((1, 8, 8)))
    prep = datafiles.Preprocessing((8, 8), 1, ("a", "b"))
    x, names = datafiles.read_images([tmp_path / "b.npz", tmp_path / "a.npz"], prep)
    assert names == [f"{tmp_path / 'b.npz'}[0]", f"{tmp_path / 'a.npz'}[0]", f"{tmp_path / 'a.npz'}[1]"]
    assert x.shape == (3, 1, 8, 8) and x[0].max() == 1.0 and x.dtype == np.float32
