"""Multi-host start-up through JAX's multi-controller runtime (`jax.distributed`), and the few
cross-process agreements the loop needs.

Every process runs the same command. How they find each other comes from the environment:

  MMJAX_COORDINATOR=host:port   explicit: with MMJAX_NUM_PROCESSES and MMJAX_PROCESS_ID
                                (optional MMJAX_LOCAL_DEVICE_IDS=0,1,...: this process's GPUs)
  MMJAX_DISTRIBUTED=auto        JAX detects them itself (Cloud TPU VMs, SLURM, Open MPI, GKE)
  neither                       a plain single-process run; nothing is initialised
  MMJAX_CPU_COLLECTIVES         cross-process collectives on CPU: gloo (default) or mpi
  MMJAX_INIT_TIMEOUT            seconds to wait for all processes to connect (default 300)

After start-up only process 0 logs below WARNING (metrics, config.json, progress bar and plots
are process 0's too); every process takes part in checkpoints, which orbax writes together.
See launch/README.md.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Mapping

import jax
import orbax.checkpoint as ocp
import numpy as np
from jax._src import distributed as jax_distributed  # the coordination-service client


from mmjax.config import ConfigError

log = logging.getLogger(__name__)


class LaunchError(ConfigError):
  """The environment describes the processes inconsistently; one sentence naming the fix."""


def _int_env(env: Mapping[str, str], name: str) -> int:
  text = env.get(name, '')
  try:
    return int(text)
  except ValueError:
    raise LaunchError(f'{name}={text!r} must be an integer when MMJAX_COORDINATOR is set: '
                      'export MMJAX_COORDINATOR, MMJAX_NUM_PROCESSES and MMJAX_PROCESS_ID '
                      'together (see launch/README.md).') from None


def initialize_args(env: Mapping[str, str] = os.environ) -> dict | None:
  """The `jax.distributed.initialize` keyword arguments the environment asks for, or None for
  a single-process run."""
  coordinator = env.get('MMJAX_COORDINATOR', '')
  mode = env.get('MMJAX_DISTRIBUTED', '').strip().lower()
  if mode not in ('', 'auto', 'off'):
    raise LaunchError(f"MMJAX_DISTRIBUTED={mode!r} is not understood: use 'auto' (let JAX "
                      "detect TPU VM / SLURM / MPI settings) or unset it.")
  if mode == 'off' or (not coordinator and mode != 'auto'):
    return None
  kwargs = {'initialization_timeout': _int_env(env, 'MMJAX_INIT_TIMEOUT')
            if env.get('MMJAX_INIT_TIMEOUT') else 300}
  if coordinator:
    kwargs.update(coordinator_address=coordinator,
                  num_processes=_int_env(env, 'MMJAX_NUM_PROCESSES'),
                  process_id=_int_env(env, 'MMJAX_PROCESS_ID'))
    if not 0 <= kwargs['process_id'] < kwargs['num_processes']:
      raise LaunchError(f"MMJAX_PROCESS_ID={kwargs['process_id']} is outside 0.."
                        f"{kwargs['num_processes'] - 1}: give each process a distinct id below "
                        'MMJAX_NUM_PROCESSES.')
  if env.get('MMJAX_LOCAL_DEVICE_IDS'):
    try:
      kwargs['local_device_ids'] = [int(i) for i in env['MMJAX_LOCAL_DEVICE_IDS'].split(',')]
    except ValueError:
      raise LaunchError(f"MMJAX_LOCAL_DEVICE_IDS={env['MMJAX_LOCAL_DEVICE_IDS']!r} must be "
                        'comma-separated device numbers, e.g. 0,1,2,3.') from None
  return kwargs


def _configure_cpu_collectives(env: Mapping[str, str]) -> None:
  """Cross-process collectives on CPU need an implementation (gloo over TCP, or MPI)."""
  impl = env.get('MMJAX_CPU_COLLECTIVES', 'gloo').strip().lower()
  if impl not in ('gloo', 'mpi'):
    raise LaunchError(f"MMJAX_CPU_COLLECTIVES={impl!r} is not supported: use 'gloo' or 'mpi'.")
  jax.config.update('jax_cpu_collectives_implementation', impl)


def initialize_from_env(env: Mapping[str, str] = os.environ) -> bool:
  """Calls `jax.distributed.initialize` when the environment asks for it; True if it did."""
  kwargs = initialize_args(env)
  if kwargs is None:
    return False
  _configure_cpu_collectives(env)
  jax.distributed.initialize(**kwargs)
  if jax.process_index() != 0:
    logging.getLogger().setLevel(logging.WARNING)  # one process narrates; all still warn
  log.info('process %d of %d, %d local / %d global devices', jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True


_barriers = itertools.count()


def barrier(name: str, timeout_s: int = 3600) -> None:
  """Waits until every process has called `barrier(name)` (through the coordination service,
  not a collective). Called before the first collectives of a run: gloo on CPU gives processes
  only 30 s to join a new communicator, and start-up or compilation can skew them by more."""
  if jax.process_count() == 1:
    return
  ocp.multihost.get_barrier_sync_fn()(key=f'mmjax_{name}_{next(_barriers)}',
                                      timeout_ms=int(timeout_s * 1000))


def any_process_flagged(flag: bool, name: str, timeout_s: int = 3600) -> bool:
  """True when `flag` is True on some process, agreed through JAX's coordination service: a
  flagged process writes a key, all meet at a barrier, then all read the keys. No device program
  runs, so the accelerators' queue is not drained. Every process calls it with the same `name`
  (unique within the run)."""
  if jax.process_count() == 1:
    return bool(flag)
  client = jax_distributed.global_state.client
  prefix = f'mmjax/flags/{name}/'
  if flag:
    client.key_value_set(prefix + str(jax.process_index()), '1')
  client.wait_at_barrier(f'mmjax_flags_{name}', int(timeout_s * 1000))
  return bool(client.key_value_dir_get(prefix))
