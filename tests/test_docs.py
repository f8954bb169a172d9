"""The API reference documents every public name, and every guide page is in the site."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PACKAGES = [
    "pyrogen.data",
    "pyrogen.nn",
    "pyrogen.models",
    "pyrogen.infer",
    "pyrogen.infer.advi",
    "pyrogen.evaluate",
    "pyrogen.train",
    "pyrogen.plot",
]


def _automodules() -> dict[str, set[str] | None]:
    """module -> the members api.rst lists for it (None: all of them)."""
    text = (DOCS / "api.rst").read_text()
    found = {}
    for match in re.finditer(r"\.\. automodule:: (\S+)\n((?:   :.*\n)*)", text):
        options = re.search(r":members:(.*)", match.group(2))
        listed = options.group(1).strip() if options else ""
        found[match.group(1)] = {m.strip() for m in listed.split(",")} if listed else None
    return found


def _public_callables():
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            defined_here = getattr(obj, "__module__", "").startswith("pyrogen.")
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and defined_here:
                yield package, name, obj


@pytest.mark.parametrize("package,name,obj", list(_public_callables()), ids=lambda v: str(v))
def test_public_name_is_in_the_api_reference(package, name, obj):
    documented = _automodules()
    module = obj.__module__
    assert module in documented, f"{package}.{name} is defined in {module}, not in docs/api.rst"
    members = documented[module]
    assert members is None or name in members, f"add {name} to :members: of {module} in api.rst"
    assert (obj.__doc__ or "").strip(), f"{package}.{name} has no docstring (autodoc skips it)"


def test_load_run_is_documented():
    assert "pyrogen.cli.runs" in _automodules()


def test_every_guide_page_is_in_the_toctree():
    index = (DOCS / "index.md").read_text()
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    listed = set(re.findall(r"^([a-z_]+)$", index, re.M))
    assert pages <= listed, f"pages missing from the index's toctree: {sorted(pages - listed)}"
