"""The studies' writing end: Markdown tables, JSON summaries, figures."""

import json

import numpy as np
from PIL import Image

from phipd_jax.evaluation import report

ROWS = [{'task': 'edges', 'name': 'a', 'swd': 1.23456, 'steps': 3},
        {'task': 'down8', 'name': 'b', 'swd': None},
        {'task': 'edges', 'name': 'c', 'swd': 0.5, 'steps': 7}]


def test_markdown_table_formats_floats_and_leaves_missing_cells_empty():
  table = report.markdown_table(ROWS, ['name', ('swd', 'SWD', '.2f'), 'steps'])
  assert table.splitlines() == ['| name | SWD | steps |', '|---|---|---|', '| a | 1.23 | 3 |',
                                '| b |  |  |', '| c | 0.50 | 7 |']


def test_grouped_tables_one_per_value_in_first_seen_order():
  text = report.grouped_tables(ROWS, 'task', ['name'])
  assert text.index('**edges**') < text.index('**down8**')
  edges = text[:text.index('**down8**')]
  assert '| a |' in edges and '| c |' in edges and '| b |' not in edges


def test_write_study_and_figure(tmp_path):
  json_path, md_path = report.write_study(str(tmp_path / 'out'), 'study', {'rows': ROWS}, 'x\n')
  assert json.load(open(json_path)) == {'rows': ROWS} and open(md_path).read() == 'x\n'
  figure, axes = report.new_figure(1, 2, (4, 2))
  axes[0, 1].plot([0, 1], [1, 0])
  path = report.save_figure(figure, str(tmp_path / 'fig' / 'f.png'), dpi=50)
  assert np.asarray(Image.open(path)).shape[:2] == (100, 200)
