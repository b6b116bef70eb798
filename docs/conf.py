"""Sphinx configuration of the documentation site (``nox -s docs``).

Builds offline: MathJax is served from ``_static/mathjax`` (the docs session copies it from the
npm registry's package), no intersphinx, and the notebooks are the copies ``nox -s notebook``
executed (``_executed/``), rendered as they are, never run again here.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import tinycnn_xp  # noqa: E402

project = "tinycnn_xp"
author = "the tinycnn_xp developers"
release = version = tinycnn_xp.__version__
copyright = "the tinycnn_xp developers"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinxarg.ext",
]
# .rst first: autosummary writes its stub pages with the first suffix.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
# The committed notebooks have no outputs; the site shows the executed copies.
exclude_patterns = ["_build", "chapter24.ipynb", "after_the_chapter.ipynb", "**/.ipynb_checkpoints",
                    "exercises.py"]
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

autosummary_generate = True
templates_path = ["_templates"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
autodoc_typehints = "signature"
numpydoc_show_class_members = False
numpydoc_validation_checks: set[str] = set()

html_theme = "pydata_sphinx_theme"
html_title = f"tinycnn_xp {version}"
html_static_path = ["_static"]
html_theme_options = {"navigation_with_keys": False, "show_prev_next": True,
                      "secondary_sidebar_items": ["page-toc"]}
html_context = {"default_mode": "light"}  # the theme's mode, set: none stored yet is no error
html_favicon = "_static/favicon.png"
mathjax_path = "mathjax/tex-chtml.js"  # local: no CDN
