"""Each objective's loss terms and their weights, registered by name (`core/objectives.py`).

`objectives.task_loss` asks the units of the task's active objectives, in the registry's order,
for their terms (`{'<kind>/<name>': scalar}`; `accuracy/` keys are metrics, not loss) and sums
them weighted. A term's weight is the first unit's `weight(task, key)` that is not None (a unit
may weigh another's terms, e.g. M3CoL's fusion weighs the auxiliary heads' cross-entropies);
else the product of every unit's `scale(task)` (CoCa scales the parts that are not its own by
`contrastive_weight`). `second_pass` units run the model again on altered inputs (M3CoL); their
terms are added after the task's loss and MoE auxiliary losses.

A unit registers with `@register(name)` in the module its record names as `loss_module`; that
module is imported the first time a task needs it.
"""

from __future__ import annotations


from mmjax.core import objectives as objectives_lib

UNITS: dict[str, 'LossTerms'] = {}


class LossTerms:
  """The loss side of one objective."""
  second_pass = False

  def terms(self, model, outputs: dict, batch: dict, task, rng) -> dict:
    """`{key: float32 scalar}` from the model's outputs (`models/objective_outputs.py`)."""
    raise NotImplementedError

  def weight(self, task, key: str) -> float | None:
    """The weight of term `key` (any unit's), or None to leave it to others."""
    return None

  def scale(self, task) -> float:
    """A factor on every term no unit weighs."""
    return 1.0


def register(name: str):
  """Class decorator: the loss terms of objective `name`."""
  def add(cls):
    if cls.terms is LossTerms.terms:
      raise ValueError(f'the loss terms of objective {name!r} need a `terms` method.')
    UNITS[name] = cls()
    return cls
  return add


def unit(record: type[objectives_lib.Objective]) -> LossTerms:
  """The loss unit of an objective record, importing its `loss_module` on first use."""
  found = objectives_lib.registered(UNITS, record, record.loss_module, 'train',
                                    f'@loss_terms.register({record.name!r})')
  if found is None:
    raise ValueError(f'objective {record.name!r} has no loss terms: register them with '
                     f'@loss_terms.register({record.name!r}) in its loss_module.')
  return found


def units(task) -> list[LossTerms]:
  """The units of the task's active objectives, in the registry's order."""
  return [unit(type(r)) for r in task.active_objectives]
