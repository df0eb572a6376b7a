"""A 3D Slicer colour table for the label map (``.ctbl``): one line ``index name R G B A`` per label, 0-255.

Load it in Slicer (Data > Add data) and pick it as the label map's colour node to see organ names and colours on
the NIfTI label map; the ``.seg.nrrd`` carries the same names and colours on its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from medseg.io.files import atomic_path
from medseg.io.writers.labels import LabelInfo, check_label_table

COLOR_TABLE_SUFFIXES = (".ctbl", ".txt")


def color_table_name(name: str) -> str:
    """A label name as a colour-table entry: Slicer splits lines on whitespace, so runs of it become ``_``."""
    return re.sub(r"\s+", "_", name.strip())


def write_color_table(label_table: Mapping[int, LabelInfo], path: str | os.PathLike[str]) -> Path:
    """Write ``label_table`` (plus ``0 Background``, transparent) as a Slicer colour table, atomically.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if not path.name.endswith(COLOR_TABLE_SUFFIXES):
        raise ValueError(f"{path}: a Slicer colour table must end in .ctbl or .txt")
    check_label_table(label_table)
    lines = [
        "# Color table written by medseg",
        f"# {len(label_table) + 1} values",
        "0 Background 0 0 0 0",
    ]
    for value, info in sorted(label_table.items()):
        red, green, blue = (int(c) for c in info.color)
        lines.append(f"{int(value)} {color_table_name(info.name)} {red} {green} {blue} 255")
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
