"""Shared fixtures: the shared-data skip rule, a session tfds folder and tiny run configs."""

import os
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO_ROOT), 'shared', 'data')
sys.path.insert(0, REPO_ROOT)  # configs/ is importable from the tests (never an entry point).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py
# One persistent XLA compilation cache for every test process (xdist workers and the
# subprocesses of the pod tests inherit it): the same tiny train step is compiled by many tests.
# A fresh clone starts empty; it only ever holds compiled programs keyed by their HLO.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR',
                      os.path.join(REPO_ROOT, '.pytest_cache', 'jax_compilation_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.5')


# End-to-end tests that take tens of seconds each on 2 cores: the `slow` tier. The README's test
# command runs the rest (`-m "not slow"`); .ci/run runs both tiers. Within a tier the slow ones
# run first, longest first, so that pytest-xdist's two workers finish together.
SLOW_TESTS = (  # Longest first (measured on 2 cores): xdist hands them out in this order.
    'test_fid_of_two_photo_folders', 'test_benchmark_sections', 'test_fid_of_a_run_and', 'test_two_domain_run_learns', 'test_latent_lwd_run',
    'test_study_reference_rows', 'test_a_clip_run_trains', 'test_bad_clip_inputs',
    'test_a_clip_run_times_each', 'test_the_readme_clip_commands',
    'test_a_clip_train_step_on_8_devices', 'test_sample_translate_and_fine_tune_a_converted_dit',
    'test_latent_run_copies', 'test_converted_pair_equals_the_references_through_load',
    'test_a_spectral_forcing_checkpoint_converts',
    'test_kill_9', 'test_two_processes',
    'test_meshes_8x1', 'test_fifty_steps', 'test_translation_study_on_any', 'test_readme_sample',
    'test_ddpm_class_conditional', 'test_readme_evaluate', 'test_init_from_copies',
    'test_sixty_jit_steps', 'test_stopped_and_resumed', 'test_corrupt_newest_checkpoint_is_moved_aside_and',
    'test_sigterm_checkpoints', 'test_resume_with_a_changed_schedule',
    'test_sigterm_during_the_final_save', 'test_adam_training_lowers', 'test_checkpoint_saved_on_8',
    'test_non_finite_loss', 'test_resume_checks_the_saved_config', 'test_invert_writes',
    'test_translate_folder_with_a_bad_file', 'test_help_exits_0',
    'test_a_pixel_run_loads_and_samples_from_a_non_editable_install',
    # Multi-device, CLI-subprocess and trained-run tests moved here to keep the quick tier under
    # 12 min on 2 cores (fresh clone, cold compile cache): still run by CI.
    'test_rbg_run_key_is_deterministic', 'test_lora_base_is_split_over_fsdp',
    'test_features_sharded_over_8_devices', 'test_codec_round_trip_reconstructs',
    'test_training_changes_only_the_adapters', 'test_bad_sample_flags_fail_before_anything',
    'test_missing_or_wrong_weights_stop', 'test_models_agree_across_attention_forms',
    'test_a_finished_run_says_so', 'test_ovg_with_zero_steps_equals_plain_inversion',
    'test_lora_dropout_drops', 'test_noise_ffts_run_on_each_devices_shard',
    'test_missing_run_is_a_clear_error', 'test_translate_without_resize_is_a_clear_error',
    'test_run_config_fills_fields_the_run_saved_without', 'test_parts_json_records_each_part',
    'test_train_writes_grids_metrics_and_config', 'test_a_bad_codec_workdir_fails',
    'test_the_low_rank_training_path_equals_the_merged', 'test_damaged_and_unfinished_checkpoints',
    # The diffusers AutoencoderKL comparisons (one module fixture converts three VAEs) and the
    # JiT paper-size parameter counts.
    'test_outputs_match_diffusers', 'test_missing_key_is_named',
    'test_wrong_shape_names_key_and_both_shapes', 'test_unexpected_keys_are_refused',
    'test_legacy_attention_names_and_conv_weights', 'test_unsupported_config_names_the_field',
    'test_scaling_and_shift', 'test_from_a_diffusers_folder',
    'test_presets_match_diffusers_architecture', 'test_parameter_counts_match_the_paper',
)


def _slow_rank(item) -> int:
  for rank, name in enumerate(SLOW_TESTS):
    if name in item.name:
      return rank
  return len(SLOW_TESTS)


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if _slow_rank(item) < len(SLOW_TESTS):
      item.add_marker(pytest.mark.slow)
  items.sort(key=_slow_rank)  # Stable: the slow ones first, longest first; the rest in order.


@pytest.fixture(scope='session')
def shared_data():
  """``../shared/data``; skipped when absent unless PHIPD_REQUIRE_SHARED_DATA=1 (CI)."""
  if not os.path.isdir(SHARED_DATA):
    if os.environ.get('PHIPD_REQUIRE_SHARED_DATA') == '1':
      pytest.fail(f'PHIPD_REQUIRE_SHARED_DATA=1 but {SHARED_DATA} is missing')
    pytest.skip(f'shared data not found at {SHARED_DATA} (a fresh clone without ../shared)')
  return SHARED_DATA


@pytest.fixture(scope='session')
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def tiny_config(tfds_dir):
  """The quickstart experiment shrunk to seconds: tiny DiT, batch 8, 16x16 crops."""
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size = 16
  config.data.resize = 48
  config.train.batch_size = 8
  config.train.num_steps = 6
  config.train.log_every = 2
  config.train.checkpoint_every = 3
  config.optim.warmup_steps = 2
  config.sample.write_grids = False
  config.sample.num_translate = 2
  config.sample.num_generate = 4
  return config


@pytest.fixture(scope='session')
def trained_run(tmp_path_factory, tfds_dir):
  """A 4-step quickstart run at 16 px with grids: the run the CLI tests sample from."""
  from phipd_jax import experiment, trainer
  from configs import quickstart
  config = quickstart.get_config('runlocal')
  config.data.tfds_dir = tfds_dir
  config.data.image_size, config.data.resize = 16, 48
  config.train.batch_size, config.train.num_steps = 8, 4
  config.train.checkpoint_every, config.train.log_every = 4, 2
  config.optim.warmup_steps = 1
  config.sample.num_steps, config.sample.num_generate, config.sample.num_translate = 2, 4, 3
  workdir = str(tmp_path_factory.mktemp('run'))
  trainer.train(experiment.build(config), workdir)
  return workdir


@pytest.fixture(scope='session')
def installed_package(tmp_path_factory):
  """The package installed the way a user installs it (``pip install .``, not editable) into a
  folder of its own: ``phipd_jax`` and nothing else from the repository (no ``configs/``)."""
  source = tmp_path_factory.mktemp('source')  # setuptools builds in the source tree: a copy.
  for name in ('pyproject.toml', 'README.md'):
    shutil.copy(os.path.join(REPO_ROOT, name), source)
  shutil.copytree(os.path.join(REPO_ROOT, 'phipd_jax'), source / 'phipd_jax',
                  ignore=shutil.ignore_patterns('__pycache__'))
  site = str(tmp_path_factory.mktemp('site'))
  subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
                  '--no-build-isolation', '--target', site, str(source)], check=True,
                 capture_output=True)
  assert sorted(n for n in os.listdir(site) if not n.endswith('.dist-info')) == ['phipd_jax']
  return site


@pytest.fixture(scope='session')
def small_ab(shared_data, tmp_path_factory):
  """``(AB folder, tfds dir)``: 48 records of edges2shoes_handbags, 24 training (ids 3..49, odd)
  and 24 held out (ids 10, 30, ..., 470: ``id % 10 == 0``), prepared in their own tfds folder."""
  folder = tmp_path_factory.mktemp('ab')
  for index in range(10, 490, 10):
    name = f'{index}_AB.jpg' if index % 20 else f'{index // 10 + 1}_AB.jpg'
    shutil.copy(os.path.join(shared_data, 'edges2shoes_handbags', 'train', name), folder)
  return str(folder), str(tmp_path_factory.mktemp('tfds_small'))
