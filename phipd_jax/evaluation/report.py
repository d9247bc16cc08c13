"""What every study writes: its rows as Markdown tables, its JSON summary, its figures.

The studies (:mod:`~phipd_jax.evaluation.runs`, :mod:`~phipd_jax.evaluation.inversion_study`,
:mod:`~phipd_jax.evaluation.lwd_study`) share one skeleton: rows of metrics per (run, setting)
-> image grids -> a JSON summary, Markdown tables and a figure. This module is its writing end:
plain functions of rows and paths, no JAX.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence, Union

# A table column: a row key (its header, ``.4g`` floats) or ``(key, header, float format)``.
Column = Union[str, tuple[str, str, str]]


def _column(column: Column) -> tuple[str, str, str]:
  return (column, column, '.4g') if isinstance(column, str) else tuple(column)


def cell(value, float_format: str = '.4g') -> str:
  """A table cell: floats formatted, None empty, anything else ``str``."""
  if value is None:
    return ''
  return format(value, float_format) if isinstance(value, float) else str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[Column],
                   title: Optional[str] = None) -> str:
  """A Markdown table of ``rows`` over ``columns`` (a missing key is an empty cell).

  Args:
    rows: one dict per table row.
    columns: row keys, or ``(key, header, float format)`` triples.
    title: a bold line above the table.

  Returns:
    The table, newline-terminated.
  """
  columns = [_column(c) for c in columns]
  lines = [f'**{title}**', ''] if title else []
  lines += ['| ' + ' | '.join(header for _, header, _ in columns) + ' |',
            '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(cell(row.get(key), fmt) for key, _, fmt in columns) + ' |'
            for row in rows]
  return '\n'.join(lines) + '\n'


def grouped_tables(rows: Sequence[dict], group: str, columns: Sequence[Column]) -> str:
  """One :func:`markdown_table` per value of ``row[group]`` (first-seen order), titled by it."""
  values = dict.fromkeys(row[group] for row in rows)
  return '\n'.join(markdown_table([r for r in rows if r[group] == value], columns, str(value))
                   for value in values)


def write_json(path: str, summary: dict) -> str:
  """``summary`` as indented JSON at ``path`` (its folder made); returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    json.dump(summary, f, indent=1)
  return path


def write_text(path: str, text: str) -> str:
  """``text`` at ``path`` (its folder made); returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return path


def write_study(out_dir: str, name: str, summary: dict, markdown: str) -> tuple[str, str]:
  """A study's ``<out_dir>/<name>.json`` (the summary) and ``<name>.md`` (its tables)."""
  return (write_json(os.path.join(out_dir, f'{name}.json'), summary),
          write_text(os.path.join(out_dir, f'{name}.md'), markdown))


def new_figure(rows: int = 1, columns: int = 1, size: tuple[float, float] = (7, 5)):
  """A matplotlib ``(figure, axes)`` on the Agg canvas (no display, no pyplot state)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=size)
  FigureCanvasAgg(figure)
  return figure, figure.subplots(rows, columns, squeeze=False)


def save_figure(figure, path: str, dpi: int = 100) -> str:
  """``figure`` as a PNG at ``path`` (its folder made, tight layout); returns the path."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  figure.tight_layout()
  figure.savefig(path, format='png', dpi=dpi)
  return path
