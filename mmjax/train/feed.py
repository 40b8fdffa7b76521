"""The run's train iterators: one per task signature, elastic across host counts.

Each iterator's data is a function of the data seed (`config.seeds.data`, default
`config.seed`) and the task's name only (not of its place in the config, nor of the number of processes): adding or removing a task leaves every other
task's examples unchanged, and a checkpointed data state resumes on any number of hosts. This
process reads the rows of each global batch that its devices hold (`host_batch_slot`).
"""

from __future__ import annotations

from mmjax.core import partitioning
from mmjax.core.tasks import Task
from mmjax.data import pipeline
from mmjax.seeds import resolve_seeds


def train_iterators(config, signatures: list[Task], mesh, data_state: dict | None = None,
                    shares: dict[str, float] | None = None) -> dict:
  """`{signature_name: TrainIterator}`, each resumed from `data_state['iterators']` if there.
  `shares` (signature name -> share of the draws, `AgdSampler.draw_shares`) scales each task's
  read-ahead in proportion to how often it is drawn."""
  saved = (data_state or {}).get('iterators', {})
  iterators = {}
  for t in signatures:
    scale = shares.get(t.signature_name, 0) * len(shares) if shares else 1.0
    slot, slots = partitioning.host_batch_slot(mesh, t.batch_size)
    it = pipeline.make_train_iterator(t, config, seed=resolve_seeds(config).data,
                                      process_index=slot, process_count=slots,
                                      prefetch_scale=scale)
    if t.signature_name in saved:
      it.set_state(saved[t.signature_name])
    iterators[t.signature_name] = it
  return iterators
