"""Sphinx configuration: user guide pages in Markdown (MyST) and an API reference by autodoc."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_figures  # noqa: E402

# The guide's figures come from the examples: make whichever are missing (docs/figures/, not
# committed; `python docs/make_figures.py --force` remakes them all).
make_figures.build()

project = "pyrogen"
author = "the pyrogen developers"
copyright = "the pyrogen developers"
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3
exclude_patterns = ["_build", "figures"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
html_theme = "alabaster"
# Wide enough for the guide's 100-column code blocks and the figures.
html_theme_options = {"page_width": "1240px", "sidebar_width": "250px", "body_max_width": "none"}
suppress_warnings = ["myst.xref_missing"]
