"""The site's own checks (``docs/check_site.py``, run on the real build by ``nox -s docs``) fail
when they should, the API page's source names every public name, and the Pythons agree."""

import ast
import importlib.util
import re
import tomllib
from pathlib import Path

import tinycnn_xp

ROOT = Path(__file__).resolve().parent.parent


def load_check_site():
    spec = importlib.util.spec_from_file_location("check_site", ROOT / "docs" / "check_site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_site(tmp_path: Path, names: list[str], stub_text: str | None = None) -> Path:
    """A built site whose API page links ``names``, each with a stub page."""
    (tmp_path / "generated").mkdir()
    links = "".join(f'<a href="generated/tinycnn_xp.{n}.html">{n}</a>' for n in names)
    (tmp_path / "api.html").write_text(f"<html>{links}</html>", encoding="utf-8")
    for name in names:
        text = stub_text if stub_text is not None else f'<dt id="tinycnn_xp.{name}">{name}</dt>'
        (tmp_path / "generated" / f"tinycnn_xp.{name}.html").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_api_check_passes_a_complete_reference(tmp_path):
    assert load_check_site().check_api(fake_site(tmp_path, list(tinycnn_xp.__all__))) == []


def test_the_api_check_names_a_missing_public_name(tmp_path):
    missing = tinycnn_xp.__all__[3]
    site = fake_site(tmp_path, [n for n in tinycnn_xp.__all__ if n != missing])
    assert load_check_site().check_api(site) == [f"api.html does not link tinycnn_xp.{missing}"]


def test_the_api_check_catches_a_directive_left_as_text(tmp_path):
    site = fake_site(tmp_path, list(tinycnn_xp.__all__), stub_text="<p>.. autoclass:: X</p>")
    problems = load_check_site().check_api(site)
    assert len(problems) == len(tinycnn_xp.__all__)
    assert all("does not document" in p for p in problems)


def test_the_api_page_lists_every_public_name():
    listed = set(re.findall(r"^   (\w+)$", (ROOT / "docs" / "api.rst").read_text(), re.M))
    assert set(tinycnn_xp.__all__) <= listed


def test_the_classifiers_name_the_pythons_nox_runs():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classified = {c.rsplit(" :: ", 1)[1] for c in meta["classifiers"]
                  if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)}
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    pythons = next(ast.literal_eval(node.value) for node in tree.body
                   if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PYTHONS")
    assert classified == set(pythons)
    assert meta["requires-python"] == f">={min(pythons, key=lambda v: tuple(map(int, v.split('.'))))}"
