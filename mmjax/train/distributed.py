"""Multi-host start-up through JAX's own multi-controller runtime (`jax.distributed`).

Explicit settings come from the environment (`MMJAX_COORDINATOR`, `MMJAX_NUM_PROCESSES`,
`MMJAX_PROCESS_ID`, optional `MMJAX_LOCAL_DEVICE_IDS`); on TPU VMs and under SLURM JAX detects
them itself when `MMJAX_DISTRIBUTED=auto`. Nothing happens for a plain single-process run.
"""

from __future__ import annotations

import logging
import os

import jax

log = logging.getLogger(__name__)


def initialize_from_env() -> bool:
  """Calls `jax.distributed.initialize` when the environment asks for it; True if it did."""
  coordinator = os.environ.get('MMJAX_COORDINATOR')
  mode = os.environ.get('MMJAX_DISTRIBUTED', '')
  if coordinator:
    kwargs = dict(coordinator_address=coordinator,
                  num_processes=int(os.environ['MMJAX_NUM_PROCESSES']),
                  process_id=int(os.environ['MMJAX_PROCESS_ID']))
    if os.environ.get('MMJAX_LOCAL_DEVICE_IDS'):
      kwargs['local_device_ids'] = [int(i) for i in os.environ['MMJAX_LOCAL_DEVICE_IDS'].split(',')]
    jax.distributed.initialize(**kwargs)
  elif mode == 'auto':
    jax.distributed.initialize()  # TPU VM metadata, SLURM, or other clusters JAX detects
  else:
    return False
  log.info('process %d of %d, %d local / %d global devices', jax.process_index(),
           jax.process_count(), jax.local_device_count(), jax.device_count())
  return True
