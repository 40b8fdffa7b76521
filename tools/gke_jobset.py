"""`python -m tools.gke_jobset --name=N --image=I --tpu=v5p-64 [--slices=2] -- TRAIN_ARG...`

Prints launch/gke/jobset.yaml filled in for the slice: pods per slice (TPU VM hosts), chips
per host, the GKE accelerator and topology node labels, and the training arguments.
"""

from __future__ import annotations

import argparse
import json
import math
import string
import sys
from pathlib import Path

from mmjax.plan import topology

TEMPLATE = Path(__file__).resolve().parents[1] / 'launch' / 'gke' / 'jobset.yaml'

# GKE's `cloud.google.com/gke-tpu-accelerator` node label of each generation.
ACCELERATORS = {'v4': 'tpu-v4-podslice', 'v5p': 'tpu-v5p-slice', 'v5e': 'tpu-v5-lite-podslice',
                'v6e': 'tpu-v6e-slice'}


def slice_layout(tpu: str) -> dict:
  """Hosts and chips per host of a slice: 4 chips per TPU VM host, or all of them when the
  slice is one host (v4/v5p up to 4 chips, v5e/v6e up to 8)."""
  spec = topology.parse_tpu_name(tpu)
  single = spec.chips <= (4 if spec.generation in ('v4', 'v5p') else 8)
  per_host = spec.chips if single else 4
  return {'hosts': math.ceil(spec.chips / per_host), 'chips_per_host': per_host,
          'accelerator': ACCELERATORS[spec.generation],
          'topology': 'x'.join(map(str, spec.shape))}


def render(name: str, image: str, tpu: str, train_args, slices: int = 1, max_restarts: int = 10,
           grace_seconds: int = 300) -> str:
  """The JobSet manifest (YAML text)."""
  if slices < 1:
    raise ValueError(f'--slices must be at least 1, got {slices}.')
  values = dict(slice_layout(tpu), name=name, image=image, slices=slices,
                max_restarts=max_restarts, grace_seconds=grace_seconds,
                args=json.dumps(list(train_args)))  # a JSON list is a YAML flow sequence
  return string.Template(TEMPLATE.read_text()).substitute(values)


def main(argv=None) -> int:
  argv = list(sys.argv[1:] if argv is None else argv)
  rest, train_args = (argv[:argv.index('--')], argv[argv.index('--') + 1:]) if '--' in argv \
      else (argv, [])
  parser = argparse.ArgumentParser(prog='python -m tools.gke_jobset', description=__doc__)
  parser.add_argument('--name', required=True)
  parser.add_argument('--image', required=True, help='the training image (launch/Dockerfile)')
  parser.add_argument('--tpu', required=True, help=f'slice type ({topology.ACCEPTED})')
  parser.add_argument('--slices', type=int, default=1)
  parser.add_argument('--max_restarts', type=int, default=10)
  args = parser.parse_args(rest)
  try:
    print(render(args.name, args.image, args.tpu, train_args, args.slices, args.max_restarts),
          end='')
  except (topology.TopologyError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  return 0


if __name__ == '__main__':
  sys.exit(main())
