"""The run's config in TensorBoard: the whole config as text (TEXT tab) and its scalar settings
as hyperparameters (HPARAMS tab), so runs can be compared by learning rate, model size, ..."""

from __future__ import annotations

from tensorboardX import summary as tb_summary

from mmjax import config as config_lib

# Metrics the HPARAMS tab shows beside each run's hyperparameters (scalars the loop logs).
HPARAM_METRICS = ('loss', 'examples_per_sec')


def flat_hparams(config) -> dict:
  """`{'optimizer.learning_rate': 0.0015, 'model.size': 'tiny', ...}`: every leaf of the config
  as a bool, int, float or str (sequences and None as their text)."""
  out = {}

  def walk(node, prefix):
    for key, value in node.items():
      name = f'{prefix}{key}'
      if isinstance(value, dict):
        walk(value, name + '.')
      elif isinstance(value, (bool, int, float, str)):
        out[name] = value
      else:
        out[name] = str(value)
  walk(config.to_dict(), '')
  return out


def config_markdown(config) -> str:
  """The resolved config as an indented JSON block (TensorBoard renders text as markdown)."""
  body = config_lib.to_json(config)
  return '\n'.join('    ' + line for line in body.splitlines())


def write(tb_writer, config) -> None:
  """Writes the config text and the hparams summaries into `tb_writer`'s own run directory."""
  tb_writer.add_text('config', config_markdown(config), 0)
  experiment, session_start, session_end = tb_summary.hparams(
      flat_hparams(config), {k: 0.0 for k in HPARAM_METRICS})
  for s in (experiment, session_start, session_end):
    tb_writer.file_writer.add_summary(s)
