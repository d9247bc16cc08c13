import sys
exec(open("tests/data/test_sources.py").read())
def test_dbg(ab_config, capsys):
  from tensorflow_datasets.core.utils import tqdm_utils
  print('ACTIVE', tqdm_utils._active, tqdm_utils.tqdm_lib, file=sys.__stdout__)
  pipeline.data_source(ab_config, 'train')
  c = capsys.readouterr()
  print('OUT', repr(c.out[:300]), 'ERR', repr(c.err[:500]), file=sys.__stdout__)
