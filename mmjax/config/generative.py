"""Checks of the generative task kinds (MultiMAE masked modeling, SyCoCa's masked modeling on a
caption task), run by `config.validate`: each error is one sentence naming the key and the fix."""

from __future__ import annotations


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
  routed = tuple(config.model.get('routed_attention', {}).get('layers', ()) or ())
  for name, t in config.tasks.items():
    key = f'config.tasks.{name}'
    mods, mae = _list(t.modalities), _list(t.get('multimae', ''))
    if mae:
      bad = [m for m in mae if m == 'text' or m not in mods]
      if bad:
        raise error(f'{key}.multimae names {bad}: list image/video/audio modalities of the task '
                    f'({",".join(mods)}), e.g. multimae={",".join(m for m in mods if m != "text")!r}.')
      others = [k for k in ('contrast', 'mil_nce', 'classify', 'caption', 'm3col')
                if _list(t.get(k, ''))]
      if others:
        raise error(f'{key} is a MultiMAE task and also sets {others}: give those objectives a '
                    'task of their own (AGD alternates tasks over the shared encoder).')
      if int(t.get('visible_tokens', 0)) < 1:
        raise error(f'{key}.visible_tokens must be a positive number of tokens the encoder sees '
                    f'(the budget split across {mae}), got {t.get("visible_tokens", 0)!r}.')
      total = sum(_tokens(config.model, t, m) for m in mae)
      if total and int(t.get('visible_tokens', 0)) > total:
        raise error(f'{key}.visible_tokens={t.visible_tokens} exceeds the {total} tokens of '
                    f'{mae} at the task\'s input sizes: choose at most {total}.')
      if float(t.get('dirichlet_alpha', 1.0)) <= 0:
        raise error(f'{key}.dirichlet_alpha must be > 0, got {t.get("dirichlet_alpha")!r}.')
      if config.model.get('encoder_sharing', 'shared') != 'shared':
        raise error(f'{key} is a MultiMAE task, which encodes its modalities as one sequence: '
                    "set config.model.encoder_sharing='shared'.")
    w = float(t.get('sycoca_weight', 0.0))
    if w < 0:
      raise error(f'{key}.sycoca_weight must be >= 0 (0 = off), got {w!r}.')
    if w > 0:
      if not t.get('caption', ''):
        raise error(f'{key}.sycoca_weight={w} needs a caption task: set caption=MODALITY too.')
      if not 0 < float(t.get('sycoca_mask_ratio', 0.5)) < 1:
        raise error(f'{key}.sycoca_mask_ratio must be in (0, 1), got '
                    f'{t.get("sycoca_mask_ratio")!r}.')
      if float(t.get('drop_token', 0.0)) > 0:
        raise error(f'{key}.sycoca_weight needs every patch scored by the text: set drop_token=0.')
    if (mae or w > 0) and routed:
      raise error(f'{key}: masked modeling reorders tokens, which routed attention cannot take: '
                  'set config.model.routed_attention.layers=() for it.')
    _check_fourm(config, key, t, mods, routed, error)


def _check_fourm(config, key: str, t, mods: list[str], routed, error) -> None:
  """A 4M task: image/audio/text modalities of the task, budgets that fit, no other objective."""
  four = _list(t.get('fourm', ''))
  if not four:
    return
  bad = [m for m in four if m not in ('image', 'audio', 'text') or m not in mods]
  if bad or len(four) < 2:
    raise error(f'{key}.fourm names {four}: list at least two of the task\'s image, audio and '
                f'text modalities ({",".join(mods)}), e.g. fourm="image,text".')
  others = [k for k in ('contrast', 'mil_nce', 'classify', 'caption', 'm3col', 'multimae')
            if _list(t.get(k, ''))]
  if others:
    raise error(f'{key} is a 4M task and also sets {others}: give those objectives a task of '
                'their own (AGD alternates tasks over the shared encoder).')
  for k in ('input_tokens', 'target_tokens'):
    if int(t.get(k, 0)) < 1:
      raise error(f'{key}.{k} must be a positive number of tokens per example, got '
                  f'{t.get(k, 0)!r}.')
  if float(t.get('dirichlet_alpha', 1.0)) <= 0:
    raise error(f'{key}.dirichlet_alpha must be > 0, got {t.get("dirichlet_alpha")!r}.')
  model = config.model
  if model.get('encoder_sharing', 'shared') != 'shared' or model.moe.get(
      'mixture_of_transformers', False) or routed:
    raise error(f'{key} is a 4M task, which encodes its tokens as one sequence on the shared '
                "encoder: set config.model.encoder_sharing='shared', "
                'moe.mixture_of_transformers=False and routed_attention.layers=().')
  if 'text' in four and t.get('text_length') and int(_first(t.text_length)) > model.max_text_length:
    raise error(f'{key}.text_length exceeds config.model.max_text_length='
                f'{model.max_text_length}: raise it.')
  if int(model.fourm.get('decoder_layers', 1)) < 1:
    raise error('config.model.fourm.decoder_layers must be at least 1.')
