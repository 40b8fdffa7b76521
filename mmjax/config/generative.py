"""Checks of the generative task kinds (MultiMAE masked modeling, SyCoCa's masked modeling on a
caption task), run by `config.validate`: each error is one sentence naming the key and the fix."""

from __future__ import annotations

from mmjax.config.defaults import setting


def _list(value) -> list[str]:
  if isinstance(value, str):
    return [v.strip() for v in value.split(',') if v.strip()]
  return [str(v) for v in (value or ())]


def _first(v):
  return v[0] if isinstance(v, (tuple, list)) else v


def _tokens(model, t, modality: str) -> int:
  """Tokens of `modality` at the task's first input sizes (0 when a size is unset)."""
  size, frames, samples = (_first(t.get(k)) for k in ('image_size', 'num_frames', 'audio_samples'))
  if modality == 'image' and size:
    return (size // model.patch_size) ** 2
  if modality == 'video' and size and frames:
    return (frames // model.tubelet_frames) * (size // model.patch_size) ** 2
  if modality == 'audio' and samples:
    a = model.audio
    if a.features == 'waveform':
      return samples // a.patch_samples
    if samples >= a.window:
      return ((1 + (samples - a.window) // a.hop) // a.patch_frames) * (a.num_mels // a.patch_mels)
  return 0


def check_generative_tasks(config, error: type[Exception]) -> None:
  """Raises `error` for a MultiMAE or SyCoCa setting that cannot train."""
  ra = setting(config.model, 'model.routed_attention')
  routed = tuple(setting(ra, 'model.routed_attention.layers') or ())
  for name, t in config.tasks.items():
    key = f'config.tasks.{name}'
    mods, mae = _list(t.modalities), _list(setting(t, 'tasks.*.multimae'))
    if mae:
      bad = [m for m in mae if m == 'text' or m not in mods]
      if bad:
        raise error(f'{key}.multimae names {bad}: list image/video/audio modalities of the task '
                    f'({",".join(mods)}), e.g. multimae={",".join(m for m in mods if m != "text")!r}.')
      others = [k for k in ('contrast', 'mil_nce', 'classify', 'caption', 'm3col')
                if _list(setting(t, f'tasks.*.{k}'))]
      if others:
        raise error(f'{key} is a MultiMAE task and also sets {others}: give those objectives a '
                    'task of their own (AGD alternates tasks over the shared encoder).')
      if int(setting(t, 'tasks.*.visible_tokens')) < 1:
        raise error(f'{key}.visible_tokens must be a positive number of tokens the encoder sees '
                    f'(the budget split across {mae}), got '
                    f'{setting(t, "tasks.*.visible_tokens")!r}.')
      total = sum(_tokens(config.model, t, m) for m in mae)
      if total and int(setting(t, 'tasks.*.visible_tokens')) > total:
        raise error(f'{key}.visible_tokens={t.visible_tokens} exceeds the {total} tokens of '
                    f'{mae} at the task\'s input sizes: choose at most {total}.')
      if float(setting(t, 'tasks.*.dirichlet_alpha')) <= 0:
        raise error(f'{key}.dirichlet_alpha must be > 0, got {t.get("dirichlet_alpha")!r}.')
      if setting(config.model, 'model.encoder_sharing') != 'shared':
        raise error(f'{key} is a MultiMAE task, which encodes its modalities as one sequence: '
                    "set config.model.encoder_sharing='shared'.")
    w = float(setting(t, 'tasks.*.sycoca_weight'))
    if w < 0:
      raise error(f'{key}.sycoca_weight must be >= 0 (0 = off), got {w!r}.')
    if w > 0:
      if not setting(t, 'tasks.*.caption'):
        raise error(f'{key}.sycoca_weight={w} needs a caption task: set caption=MODALITY too.')
      if not 0 < float(setting(t, 'tasks.*.sycoca_mask_ratio')) < 1:
        raise error(f'{key}.sycoca_mask_ratio must be in (0, 1), got '
                    f'{t.get("sycoca_mask_ratio")!r}.')
      if float(setting(t, 'tasks.*.drop_token')) > 0:
        raise error(f'{key}.sycoca_weight needs every patch scored by the text: set drop_token=0.')
    if (mae or w > 0) and routed:
      raise error(f'{key}: masked modeling reorders tokens, which routed attention cannot take: '
                  'set config.model.routed_attention.layers=() for it.')
    _check_fourm(config, key, t, mods, routed, error)


def _check_fourm(config, key: str, t, mods: list[str], routed, error) -> None:
  """A 4M task: image/audio/text modalities of the task, budgets that fit, no other objective."""
  four = _list(setting(t, 'tasks.*.fourm'))
  if not four:
    return
  bad = [m for m in four if m not in ('image', 'audio', 'text') or m not in mods]
  if bad or len(four) < 2:
    raise error(f'{key}.fourm names {four}: list at least two of the task\'s image, audio and '
                f'text modalities ({",".join(mods)}), e.g. fourm="image,text".')
  others = [k for k in ('contrast', 'mil_nce', 'classify', 'caption', 'm3col', 'multimae')
            if _list(setting(t, f'tasks.*.{k}'))]
  if others:
    raise error(f'{key} is a 4M task and also sets {others}: give those objectives a task of '
                'their own (AGD alternates tasks over the shared encoder).')
  for k in ('input_tokens', 'target_tokens'):
    if int(setting(t, f'tasks.*.{k}')) < 1:
      raise error(f'{key}.{k} must be a positive number of tokens per example, got '
                  f'{setting(t, f"tasks.*.{k}")!r}.')
  if float(setting(t, 'tasks.*.dirichlet_alpha')) <= 0:
    raise error(f'{key}.dirichlet_alpha must be > 0, got {t.get("dirichlet_alpha")!r}.')
  model = config.model
  if (setting(model, 'model.encoder_sharing') != 'shared'
      or setting(model.moe, 'model.moe.mixture_of_transformers') or routed):
    raise error(f'{key} is a 4M task, which encodes its tokens as one sequence on the shared '
                "encoder: set config.model.encoder_sharing='shared', "
                'moe.mixture_of_transformers=False and routed_attention.layers=().')
  if 'text' in four and t.get('text_length') and int(_first(t.text_length)) > model.max_text_length:
    raise error(f'{key}.text_length exceeds config.model.max_text_length='
                f'{model.max_text_length}: raise it.')
  if int(model.fourm.get('decoder_layers', 1)) < 1:
    raise error('config.model.fourm.decoder_layers must be at least 1.')
