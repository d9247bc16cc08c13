"""Pod scale and fault tolerance: FSDP meshes, restore across device counts, kill -9, SIGTERM,
damaged checkpoints, NaN stops, resume config checks and two real processes in lockstep."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from phipd_jax import checkpoint, experiment, sharding, specs, trainer, writers

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_python(script: str, *args, devices: int = 8, timeout: int = 600, env_extra=None):
  env = dict(os.environ, PYTHONPATH=REPO_ROOT,
             XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', **(env_extra or {}))
  return subprocess.run([sys.executable, '-c', textwrap.dedent(script), *map(str, args)],
                        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def _train_command(workdir, tfds_dir, *overrides):
  return [sys.executable, 'train.py', '--config', 'configs/quickstart.py:runlocal',
          '--workdir', str(workdir), f'--config.data.tfds_dir={tfds_dir}',
          '--config.data.image_size=16', '--config.data.resize=48',
          '--config.train.batch_size=8', '--config.optim.warmup_steps=2',
          '--config.sample.write_grids=False', *overrides]


def _restore(workdir, config):
  template = experiment.build(config).create_train_state(sharding.make_mesh())
  return checkpoint.restore_latest(str(workdir), template)


def run(config, workdir, **kwargs):
  """``trainer.train`` returning the final state."""
  return trainer.train(experiment.build(config), str(workdir), **kwargs).state


def _assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_fsdp_spec_shards_the_largest_divisible_dimension():
  assert sharding.fsdp_spec((128, 384), 8, 1024) == jax.sharding.PartitionSpec(None, 'fsdp')
  assert sharding.fsdp_spec((384, 128), 4, 1024) == jax.sharding.PartitionSpec('fsdp', None)
  assert sharding.fsdp_spec((384,), 8, 1024) == jax.sharding.PartitionSpec()  # Small: replicated.
  assert sharding.fsdp_spec((7, 9, 11), 2, 1) == jax.sharding.PartitionSpec()  # Nothing divides.
  assert sharding.fsdp_spec((128, 384), 1, 1) == jax.sharding.PartitionSpec()
  with pytest.raises(ValueError, match='does not divide'):
    sharding.make_mesh(3, 1)


MESH_SCRIPT = '''
    import re, sys, jax, numpy as np
    from configs import quickstart
    from phipd_jax import experiment, sharding
    from phipd_jax.data import pipeline
    config = quickstart.get_config('runlocal')
    config.data.tfds_dir = sys.argv[1]
    config.data.image_size, config.data.resize, config.train.batch_size = 16, 48, 8
    dataset = pipeline.train_dataset(config.data, 8, 0, 3)
    losses = {}
    for data, fsdp in [(8, 1), (2, 4), (1, 8)]:
      config.mesh.data, config.mesh.fsdp = data, fsdp
      mesh = sharding.make_mesh(data, fsdp)
      exp = experiment.build(config, sharding.data_parallel_size(mesh))
      state = exp.create_train_state(mesh)
      kernel = state.params['blocks'][0]['mlp_in']['kernel']
      spec = kernel.sharding.spec
      assert (fsdp == 1) == ('fsdp' not in tuple(spec)), (fsdp, spec)  # Born sharded.
      assert state.opt_state[1][0].mu['blocks'][0]['mlp_in']['kernel'].sharding.spec == spec
      step = exp.train_step(mesh, state)
      if fsdp == 1:  # The FSS noise's FFTs run on each device's image, not on all 8 of them.
        hlo = step.lower(state, sharding.global_batch(dataset[0], mesh)).compile().as_text()
        assert re.findall(r'= [a-z0-9]+\\[(\\d+),[^=]*? fft\\(', hlo) == ['1', '1', '1'], hlo
      for i in range(3):
        state, metrics = step(state, sharding.global_batch(dataset[i], mesh))
      losses[(data, fsdp)] = float(metrics['loss'])
    print(losses)
    values = list(losses.values())
    np.testing.assert_allclose(values, values[0], rtol=1e-5)
    print('OK')
'''


def test_meshes_8x1_2x4_1x8_give_the_same_loss(tfds_dir):
  result = _run_python(MESH_SCRIPT, tfds_dir)
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-3000:]


RESTORE_SCRIPT = '''
    import sys, jax, numpy as np
    from configs import quickstart
    from phipd_jax import checkpoint, experiment, sharding
    config = quickstart.get_config('runlocal')
    config.data.tfds_dir = sys.argv[1]
    workdir = sys.argv[2]
    devices = jax.devices()
    config.mesh.data, config.mesh.fsdp = 1, 8
    mesh = sharding.make_mesh(1, 8, devices)
    state = experiment.build(config).create_train_state(mesh)
    saver = checkpoint.Checkpointer(workdir)
    saver.save(5, state, force=True)
    saver.close()
    saved = jax.tree.map(np.asarray, state)
    for count, fsdp in [(4, 4), (1, 1)]:
      config.mesh.data, config.mesh.fsdp = 1, fsdp
      target_mesh = sharding.make_mesh(1, fsdp, devices[:count])
      # A mesh over a subset of the devices: the caller names its data-parallel size.
      exp = experiment.build(config, sharding.data_parallel_size(target_mesh))
      template = exp.create_train_state(target_mesh)
      restored = checkpoint.restore_latest(workdir, template)
      leaf = restored.params['blocks'][0]['mlp_in']['kernel']
      assert len(leaf.sharding.device_set) == count, leaf.sharding
      for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(restored), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    print('OK')
'''


def test_checkpoint_saved_on_8_devices_restores_on_4_and_on_1(tfds_dir, tmp_path):
  result = _run_python(RESTORE_SCRIPT, tfds_dir, tmp_path / 'run')
  assert result.returncode == 0 and 'OK' in result.stdout, result.stdout + result.stderr[-3000:]


def _wait_for(predicate, process, timeout=300):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if predicate():
      return
    if process.poll() is not None:
      raise AssertionError(f'training exited early with code {process.returncode}')
    time.sleep(0.2)
  raise AssertionError('timed out waiting for the training process')


def _finished_steps(workdir):
  directory = workdir / 'checkpoints'
  if not directory.exists():
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_kill_9_mid_run_then_restart_equals_uninterrupted(tiny_config, tfds_dir, tmp_path):
  """Both runs are fresh processes without the persistent compilation cache: an executable
  compiled elsewhere (another test's process) may round differently in the last bit."""
  overrides = ['--config.train.num_steps=12', '--config.train.checkpoint_every=3',
               '--config.train.log_every=3']
  env = dict(os.environ, JAX_ENABLE_COMPILATION_CACHE='false')
  killed = tmp_path / 'killed'
  log = open(tmp_path / 'killed.log', 'w+')  # Files, not pipes: nobody reads while it runs.
  process = subprocess.Popen(_train_command(killed, tfds_dir, *overrides), cwd=REPO_ROOT,
                             stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
  _wait_for(lambda: 6 in _finished_steps(killed), process)
  process.send_signal(signal.SIGKILL)
  process.wait()
  assert _finished_steps(killed)[-1] < 12  # Killed before the end ...
  resumed = subprocess.run(_train_command(killed, tfds_dir, *overrides), cwd=REPO_ROOT,
                           capture_output=True, text=True, timeout=600, env=env)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert 'resumed from' in resumed.stdout + resumed.stderr
  straight = tmp_path / 'straight'
  result = subprocess.run(_train_command(straight, tfds_dir, *overrides), cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  tiny_config.train.num_steps, tiny_config.train.checkpoint_every = 12, 3
  # ... and nothing lost: params, EMA, optimizer state, step and key, bit for bit.
  _assert_trees_equal(_restore(killed, tiny_config), _restore(straight, tiny_config))


def test_sigterm_checkpoints_the_current_step_and_exits_0(tfds_dir, tmp_path):
  workdir = tmp_path / 'run'
  log = open(tmp_path / 'train.log', 'w+')
  process = subprocess.Popen(
      _train_command(workdir, tfds_dir, '--config.train.num_steps=100000',
                     '--config.train.checkpoint_every=100000', '--config.train.log_every=2'),
      cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
  metrics = workdir / 'metrics.jsonl'
  _wait_for(lambda: metrics.exists() and metrics.read_text().count('\n') >= 2, process)
  process.send_signal(signal.SIGTERM)
  process.wait(timeout=300)
  log.seek(0)
  stdout = log.read()
  assert process.returncode == 0, stdout[-3000:]
  steps = _finished_steps(workdir)
  last_logged = json.loads(metrics.read_text().strip().splitlines()[-1])['step']
  assert steps == [last_logged]  # The step it stopped at (logged once more on the way out).
  assert 4 <= steps[0] < 100000
  assert f'signal {int(signal.SIGTERM)}: checkpoint saved at step {steps[0]}' in stdout


def test_damaged_and_unfinished_checkpoints_are_skipped(tiny_config, tmp_path):
  state = run(tiny_config, str(tmp_path))  # Checkpoints at steps 3 and 6.
  directory = tmp_path / 'checkpoints'
  shutil.copytree(directory / '6', directory / '9.orbax-checkpoint-tmp-1234')  # Died mid-write.
  for root, _, files in os.walk(directory / '6'):  # Truncate every array file of step 6.
    for name in files:
      if 'ocdbt' in root or name.startswith('d'):
        open(os.path.join(root, name), 'wb').close()
  checkpointer = checkpoint.Checkpointer(str(tmp_path))
  assert checkpointer.latest_step() == 6  # The unfinished write is not a checkpoint.
  restored = checkpointer.restore(state)
  checkpointer.close()
  assert int(restored.step) == 3  # Step 6 is unreadable: the one before it is used.


def test_non_finite_loss_stops_the_run_naming_the_step(tiny_config, tmp_path):
  tiny_config.optim.learning_rate = 1e30
  tiny_config.optim.grad_clip = 1e30
  tiny_config.train.num_steps, tiny_config.train.checkpoint_every = 20, 20
  with pytest.raises(FloatingPointError, match=r'non-finite loss or gradient at step \d+'):
    run(tiny_config, str(tmp_path))
  assert not (tmp_path / 'checkpoints').exists() or not os.listdir(tmp_path / 'checkpoints')


def test_resume_checks_the_saved_config(tiny_config, tmp_path):
  run(tiny_config, str(tmp_path), stop_after=3)
  changed = tiny_config.copy_and_resolve_references()
  changed.model.patch_size = 2
  with pytest.raises(ValueError, match='cannot resume.*model.patch_size'):
    run(changed, str(tmp_path))
  harmless = tiny_config.copy_and_resolve_references()
  harmless.train.log_every = 3
  saved = checkpoint.load_config_dict(str(tmp_path))
  assert specs.check_resume(saved, harmless.to_dict()) == ['train.log_every: 2 -> 3']
  assert int(run(harmless, str(tmp_path)).step) == 6


TWO_PROCESS_SCRIPT = '''
    import sys, jax
    jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
    import numpy as np
    from phipd_jax import experiment, trainer
    from configs import quickstart
    config = quickstart.get_config('runlocal')
    config.data.tfds_dir = sys.argv[3]
    config.data.image_size, config.data.resize, config.train.batch_size = 16, 48, 8
    config.train.num_steps, config.train.checkpoint_every, config.train.log_every = 4, 4, 2
    config.optim.warmup_steps, config.sample.write_grids = 2, False
    assert jax.process_count() == 2 and jax.device_count() == 4
    state = trainer.train(experiment.build(config), sys.argv[4]).state
    checksum = sum(float(np.sum(np.asarray(x.addressable_shards[0].data, np.float64)))
                   for x in jax.tree.leaves(state.params))
    print(f'CHECKSUM {checksum!r}')
'''


def test_two_processes_train_in_lockstep_and_match_one_process(tiny_config, tfds_dir, tmp_path):
  with socket.socket() as sock:
    sock.bind(('localhost', 0))
    port = sock.getsockname()[1]
  env = dict(os.environ, PYTHONPATH=REPO_ROOT,
             XLA_FLAGS='--xla_force_host_platform_device_count=2')
  from phipd_jax.data import pipeline
  pipeline.data_source(tiny_config.data, 'train')  # Build once here, not racing in both.
  # Output to files, not pipes: a full pipe would block one process inside a collective.
  logs = [open(tmp_path / f'process_{i}.log', 'w+') for i in range(2)]
  processes = [subprocess.Popen(
      [sys.executable, '-c', textwrap.dedent(TWO_PROCESS_SCRIPT), f'localhost:{port}', str(i),
       tfds_dir, str(tmp_path / 'multi')], env=env, cwd=REPO_ROOT, stdout=logs[i],
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = []
  for process, log in zip(processes, logs):
    process.wait(timeout=600)
    log.seek(0)
    outputs.append(log.read())
    assert process.returncode == 0, outputs[-1][-3000:]
  checksums = [float(output.split('CHECKSUM ')[1].split()[0]) for output in outputs]
  assert checksums[0] == checksums[1]  # Lockstep: identical parameters on both processes.
  tiny_config.train.num_steps, tiny_config.train.checkpoint_every = 4, 4
  single = run(tiny_config, str(tmp_path / 'single'))
  expected = sum(float(np.sum(np.asarray(x, np.float64))) for x in jax.tree.leaves(single.params))
  np.testing.assert_allclose(checksums[0], expected, rtol=1e-5)  # Same global batches as 1 proc.
  rows = [json.loads(line) for line in open(tmp_path / 'multi' / 'metrics.jsonl')]
  assert [r['step'] for r in rows] == [2, 4]  # Written once, by process 0.


def test_stopped_and_resumed_run_equals_uninterrupted_run(tiny_config, tmp_path):
  uninterrupted = run(tiny_config, tmp_path / 'a')
  run(tiny_config, tmp_path / 'b', stop_after=4)
  assert sorted(os.listdir(tmp_path / 'b' / 'checkpoints')) == ['3', '4']
  resumed = run(tiny_config, tmp_path / 'b')
  _assert_trees_equal(resumed, uninterrupted)  # params, EMA, optimizer state, step, key.
  rows = [r['step'] for r in writers.read_metrics(str(tmp_path / 'b'))]
  assert rows == [2, 4, 6]  # Logged once per window, none lost or repeated across the restart.


def test_init_from_copies_params_and_restarts_the_optimizer(tiny_config, tmp_path):
  source = run(tiny_config, str(tmp_path / 'source'), stop_after=3)
  tiny_config.init_from = str(tmp_path / 'source')
  tiny_config.train.num_steps = 1
  tiny_config.optim.warmup_steps = 0
  tiny_config.optim.learning_rate = 1e-9  # One Adam step moves each weight by about 1e-9.
  finetuned = run(tiny_config, str(tmp_path / 'finetune'))
  for a, b in zip(jax.tree.leaves(finetuned.params), jax.tree.leaves(source.params), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-8)
  assert int(finetuned.step) == 1
  assert int(jax.tree.leaves(finetuned.opt_state)[0]) == 1  # A fresh optimizer: one update.


def test_ddpm_class_conditional_run_trains_and_samples(tiny_config, tmp_path):
  """The DDPM + eps + DDIM path and labels with guidance, through the trainer."""
  config = tiny_config
  config.diffusion.process, config.diffusion.prediction = 'ddpm', 'eps'
  config.sample.sampler, config.sample.num_steps = 'ddim', 3
  config.model.num_classes, config.sample.guidance_scale = 2, 2.0
  config.train.num_steps, config.train.checkpoint_every = 3, 3
  config.sample.write_grids = True
  state = run(config, str(tmp_path))
  assert int(state.step) == 3
  samples = np.load(tmp_path / 'samples' / 'generate_000003.npz')['samples']
  assert samples.shape == (4, 16, 16, 3) and np.all(np.isfinite(samples))
  assert (tmp_path / 'samples' / 'translate_000003.png').exists()


@pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')  # No tracebacks.
def test_corrupt_newest_checkpoint_is_moved_aside_and_the_run_finishes(tiny_config, tmp_path):
  tiny_config.train.num_steps = 9
  run(tiny_config, tmp_path, stop_after=6)  # Checkpoints 3 and 6.
  params_dir = tmp_path / 'checkpoints' / '6' / 'params'
  array_files = [os.path.join(root, name) for root, _, names in os.walk(params_dir)
                 for name in names if 'ocdbt' in root or name.startswith('d')]
  assert array_files
  for path in array_files:  # Truncate the real array files of the newest checkpoint.
    with open(path, 'r+b') as f:
      f.truncate(os.path.getsize(path) // 2)
  state = run(tiny_config, tmp_path)  # Falls back to 3, saves 6 again, finishes at 9.
  assert int(state.step) == 9
  assert _finished_steps(tmp_path)[-1] == 9
  moved = os.listdir(tmp_path / 'checkpoints.corrupt')
  assert len(moved) == 1 and moved[0].startswith('6-')  # Renamed, never deleted.


SIGTERM_IN_FINAL_SAVE = '''
    import os, signal, sys
    from configs import quickstart
    from phipd_jax import checkpoint, experiment, trainer
    config = quickstart.get_config('runlocal')
    config.data.tfds_dir = sys.argv[1]
    config.data.image_size, config.data.resize, config.train.batch_size = 16, 48, 8
    config.train.num_steps, config.train.checkpoint_every = 2, 2
    config.optim.warmup_steps, config.sample.write_grids = 1, False
    wait = checkpoint.Checkpointer.wait
    def wait_after_a_signal(self):
      os.kill(os.getpid(), signal.SIGTERM)  # A signal while the final save is in flight.
      wait(self)
    checkpoint.Checkpointer.wait = wait_after_a_signal
    summary = trainer.train(experiment.build(config), sys.argv[2])
    print('FINISHED', summary.end_step)
'''


def test_sigterm_during_the_final_save_keeps_it(tfds_dir, tmp_path):
  result = _run_python(SIGTERM_IN_FINAL_SAVE, tfds_dir, tmp_path / 'run', devices=1)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
  assert 'FINISHED 2' in result.stdout
  assert _finished_steps(tmp_path / 'run') == [2]
  assert not [n for n in os.listdir(tmp_path / 'run' / 'checkpoints') if 'tmp' in n]


def test_resume_with_a_changed_schedule_is_an_error_unless_allowed(tiny_config, tmp_path):
  run(tiny_config, tmp_path, stop_after=3)
  longer = tiny_config.copy_and_resolve_references()
  longer.train.num_steps = 9  # Changes the cosine schedule of the steps already taken.
  with pytest.raises(ValueError, match=r'train.num_steps: 6 -> 9.*--allow_config_change'):
    trainer.train(experiment.build(longer), str(tmp_path))
  assert int(run(longer, tmp_path, allow_config_change=True).step) == 9


def test_a_finished_run_says_so(tiny_config, tmp_path, capsys):
  tiny_config.train.num_steps = 3
  run(tiny_config, tmp_path)
  capsys.readouterr()
  summary = trainer.train(experiment.build(tiny_config), str(tmp_path))
  assert summary.end_step == 3 and 'run already complete' in capsys.readouterr().out


def test_init_from_a_missing_run_fails_before_anything_is_written(tiny_config, tmp_path):
  tiny_config.init_from = str(tmp_path / 'no_such_run')
  with pytest.raises(FileNotFoundError, match='config.init_from'):
    trainer.train(experiment.build(tiny_config), str(tmp_path / 'run'))
  assert not (tmp_path / 'no_such_run').exists() and not (tmp_path / 'run').exists()


def test_a_missing_data_dir_fails_before_the_workdir_is_touched(tiny_config, tmp_path):
  tiny_config.data.name, tiny_config.data.image_key = 'edges2shoes_handbags', 'photo'
  tiny_config.data.dir = str(tmp_path / 'no_such_folder')
  with pytest.raises(FileNotFoundError, match='no_such_folder'):
    trainer.train(experiment.build(tiny_config), str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()
