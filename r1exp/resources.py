"""Where r1exp's config tree (`conf/`) and launcher configs (`launchers/`) are.

They live at the checkout's top level, beside the package, and an editable install reads them
there; a wheel has no checkout, so the build copies them into the package (setup.py) and an
installed r1exp reads those copies.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    inside_package = PACKAGE_DIR / name
    return inside_package if inside_package.is_dir() else PACKAGE_DIR.parent / name


CONF_DIR = shipped_dir("conf")
LAUNCHERS_DIR = shipped_dir("launchers")
