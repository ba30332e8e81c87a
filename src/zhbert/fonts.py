"""A CJK font for matplotlib, so Chinese titles and labels render instead of boxes.

matplotlib's default DejaVu Sans has no Chinese glyphs: every character becomes
an empty box and a "Glyph ... missing from font(s)" warning. We register Noto Sans
CJK (shipped by the pip package ``cvttf-NotoSansCJK-Regular``, no system fonts or
network needed) and put it first in the sans-serif list; the font also covers
Latin text, and matplotlib (>= 3.6) falls back glyph by glyph to the next family
in the list for anything it lacks.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

log = logging.getLogger(__name__)

FONT_FILE = "NotoSansCJKtc-Regular.otf"


def cjk_font_path() -> Path | None:
    """Path of the packaged Noto Sans CJK font, or None when the package is missing."""
    try:
        import cvttf_NotoSansCJK_Regular as pkg
    except ImportError:
        return None
    path = Path(pkg.__file__).parent / FONT_FILE
    return path if path.exists() else None


@functools.cache
def setup_cjk_font() -> str | None:
    """Register the CJK font with matplotlib and make it the first sans-serif family.

    Returns the family name, or None (silently keeping matplotlib's defaults) when
    the font package is not installed. Safe to call many times.
    """
    import matplotlib
    from matplotlib import font_manager

    path = cjk_font_path()
    if path is None:
        log.debug("cvttf-NotoSansCJK-Regular not installed; Chinese text will show as boxes")
        return None
    font_manager.fontManager.addfont(str(path))
    family = font_manager.FontProperties(fname=str(path)).get_name()
    rc = matplotlib.rcParams
    rc["font.sans-serif"] = [family] + [f for f in rc["font.sans-serif"] if f != family]
    rc["font.family"] = "sans-serif"
    return family
