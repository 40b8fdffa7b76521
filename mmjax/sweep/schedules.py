"""Shared pieces of the shipped sweep files: a demo-scale schedule and the digits metrics.

`scaled_schedule(800)` -> overrides whose warmup, decay, logging and checkpoint cadence follow
`config.total_steps` (functions of the config, evaluated after the command line), so
`--config.total_steps=N` rescales a whole sweep.
"""

from __future__ import annotations

ZERO_SHOT_DIGITS = tuple(f'zero_shot/digits/{m}/top1' for m in ('image', 'video', 'audio'))
# The pre-registered findings' primary metric (README): mean of video and audio zero-shot top-1.
PRIMARY = 'mean(zero_shot/digits/video/top1,zero_shot/digits/audio/top1)'


def scaled_schedule(total_steps: int, warmup_div: int = 12, log_div: int = 40,
                    checkpoint_div: int = 4) -> dict:
  """Overrides: `total_steps`; warmup `total/warmup_div`, decay over all steps, a log row every
  `total/log_div` steps, a checkpoint every `total/checkpoint_div` (each at least 1)."""
  return {
      'total_steps': int(total_steps),
      'optimizer.warmup_steps': lambda c: max(1, c.total_steps // warmup_div),
      'optimizer.decay_steps': lambda c: c.total_steps,
      'log_every': lambda c: max(1, c.total_steps // log_div),
      'checkpoint_every': lambda c: max(1, c.total_steps // checkpoint_div),
  }
