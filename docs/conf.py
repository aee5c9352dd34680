"""Sphinx configuration of the litestar_db documentation (English at the root, Chinese under ``zh/``).

Built by ``make docs`` with ``-W --keep-going``: every warning fails the build. No intersphinx inventories are
configured, so the build never needs the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
sys.path.insert(0, str(HERE.parent))

project = "litestar_db"
author = "litestar_db contributors"
copyright = "litestar_db contributors"
release = "0.1.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "ltdb_docs",
]

language = "en"
root_doc = "index"
exclude_patterns = ["_build", "examples", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []

# autodoc: members come from each module's ``__all__``, in source order; signatures keep the annotations as
# written (``from __future__ import annotations``), so nothing needs resolving at build time.
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_preserve_defaults = True
# Subclasses of SQLAlchemy classes must not pull in SQLAlchemy's own docstrings (and their Sphinx labels).
autodoc_inherit_docstrings = False

# Google-style docstrings only.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True

html_theme = "shibuya"
html_title = "litestar_db"
html_theme_options = {
    "accent_color": "amber",
    "nav_links": [
        {"title": "Guide", "url": "concepts"},
        {"title": "API", "url": "api/index"},
        {"title": "中文", "url": "zh/index"},
    ],
}
html_static_path: list[str] = []
html_show_sourcelink = False
