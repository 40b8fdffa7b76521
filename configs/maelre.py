"""python -m mmjax.train --config=configs/maelre.py --workdir=runs/maelre
python -m mmjax.train --config=configs/maelre.py:mamba --workdir=runs/maelre_mamba

A MAELRE-style long-range encoder (mmjax/models/token_merging.py) on the demo's `mmjax_digits`
tasks: after blocks 0 and 1 half of the tokens are merged by bipartite soft matching of the
attention keys (32 video tokens -> 16 -> 8, 28 audio -> 14 -> 7, 16 image or text -> 8 -> 4),
merged tokens carry their size (size-weighted attention), and blocks reading more than 16
tokens (the first block of video and audio) use size-weighted linear attention instead of
softmax. The digits' inputs are short; the mechanism is what is exercised here, the savings
grow with the length (tools/bench_long_range.py). `:mamba` makes the first block a Mamba block
(`model.layer_types`), whose outputs then drive the first merge.
"""

import os

from mmjax.config import import_config_module

_HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(arg=None):
  if arg not in (None, 'mamba'):
    raise ValueError(f"configs/maelre.py takes no argument or ':mamba', got {arg!r}.")
  c = import_config_module(os.path.join(_HERE, 'demo.py')).get_config()
  c.model.maelre.merge_after = (0, 1)
  c.model.maelre.merge_ratio = 0.5
  c.model.maelre.linear_above = 16
  if arg == 'mamba':
    c.model.layer_types = ('mamba', 'attention', 'attention', 'attention')
  return c
