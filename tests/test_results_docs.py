"""The readings in docs/results.md that state a direction agree with the committed JSON."""

import json
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(REPO_ROOT, 'docs', 'results')


def _rows(path):
  with open(os.path.join(RESULTS, path)) as f:
    return json.load(f)['rows']


def test_latent_phipd_on_photos_gains_structure_and_realism_with_the_radius():
  """'Re-rendering photos, r = 2 -> 8 raises structure and realism together' (latent phi-PD
  section): every metric moves the same way as the radius grows, at 1500 steps."""
  rows = {r['radius']: r for r in _rows('lwd_study/phipd_latent.json')
          if r.get('task') == 'photo' and r.get('method') == 'phipd' and r['train_steps'] == 1500}
  radii = sorted(rows)
  assert radii == [2.0, 4.0, 8.0]
  for low, high in zip(radii, radii[1:]):
    assert rows[high]['gradient_correlation'] > rows[low]['gradient_correlation']  # Structure.
    assert rows[high]['fd_vgg'] < rows[low]['fd_vgg']  # Realism (lower is better).
    assert rows[high]['swd_mean'] < rows[low]['swd_mean']
    assert rows[high]['lpips_target'] < rows[low]['lpips_target']
  text = open(os.path.join(REPO_ROOT, 'docs', 'results.md')).read()
  assert 'trades realism for structure monotonically' not in text
  assert f"FD-VGG\n  {rows[2.0]['fd_vgg']:.0f} -> {rows[8.0]['fd_vgg']:.0f}" in text


def test_trailing_spacing_is_not_called_a_remedy():
  text = open(os.path.join(REPO_ROOT, 'docs', 'results.md')).read()
  assert 'is the other standard remedy' not in text
  assert "'trailing'` (Lin et al. 2024) is **no** remedy here" in text

