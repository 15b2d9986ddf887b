"""The page's static files (vendored three.js subset, our JS and CSS), read from package data."""
from __future__ import annotations

from functools import cache
from importlib import resources

THREE_JS = "three.page.min.js"
THREE_LICENSE = "THREE_LICENSE"


@cache
def read_asset(name: str) -> str:
    """The text of ``assets/NAME`` (UTF-8)."""
    return resources.files("align3d_rt.eval.page").joinpath("assets").joinpath(name).read_text(encoding="utf-8")


def inline_script(name: str) -> str:
    """``<script>`` element holding the asset's source (refuses a source that could end it early:
    '</script', or '<!--' which with '<script' changes how the HTML parser reads the rest)."""
    source = read_asset(name)
    if "</script" in source.lower() or "<!--" in source:
        raise ValueError(f"asset {name} contains '</script' or '<!--' and cannot be inlined")
    return f"<script>\n{source}\n</script>"
