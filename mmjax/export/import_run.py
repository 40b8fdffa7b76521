"""`import_checkpoint`: a published checkpoint (`published.py`) -> an mmjax export folder.

The folder has the layout `mmjax.export` writes, so everything that reads an export reads it
(`load_model`, `mmjax-evaluate --workdir=OUT`, `--config.init_from=OUT`, `tools.upcycle`):

  OUT/config.json          the run config (image/text towers, poolings, pixel mean/std, ...)
  OUT/model.safetensors    params (step 0), config in the metadata
  OUT/tokenizer.json       CLIP byte-level BPE (`tokenizers` serialization), or
  OUT/siglip_spiece.model  SigLIP's SentencePiece model
  OUT/export_report.json   manifest: source, preprocessing, files, self-check
  OUT/README.md            model card

Every input is checked before anything is written, the folder is staged beside OUT and renamed
at the end; before that the export is read back and compared with what was meant to be written
(every parameter bit for bit, and the config; recorded in the report).
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
from flax import nnx

from mmjax import config as config_lib
from mmjax.core.exports import layout
from mmjax.core.exports import param_names as naming
from mmjax.core.exports import safetensors_format
from mmjax.core.exports.params_io import load_params
from mmjax.data.clip_tokenizer import ClipTokenizer
from mmjax.data.clip_tokenizer import TOKENIZER_FILE as CLIP_FILE
from mmjax.data.siglip_tokenizer import TOKENIZER_FILE as SIGLIP_FILE
from mmjax.export import published, staging
from mmjax.export.errors import ExportError
from mmjax.models.model import build_model


def _card(imported, report: dict) -> str:
  c = imported.config.model
  t = c.towers.text
  p = imported.preprocess
  return '\n'.join([
      '---', 'library_name: mmjax', 'tags: [clip, image-text, imported]', '---', '',
      f'# Imported {imported.source["format"]} model', '',
      f'Imported into mmjax by `python -m tools.import_weights {imported.source["format"]}` from '
      f'`{imported.source.get("weights") or imported.source.get("folder")}`; the weights are the '
      'published ones, unchanged.', '',
      '| tower | width | layers | heads | MLP | pooling |', '|---|---|---|---|---|---|',
      f'| image | {c.width} | {c.num_layers} | {c.num_heads} | {c.mlp_dim} | '
      f'{c.towers.image.pooling} |',
      f'| text | {t.width} | {t.num_layers} | {t.num_heads} | {t.mlp_dim} | {t.pooling} |', '',
      f'Common space {c.embed_dim}; activation {c.activation}; LayerNorm eps {c.norm_eps}; '
      f'contrastive loss {c.contrast_loss}.', '',
      f'Preprocessing: resize ({p["resize"]}, {p["interpolation"]}) to {p["size"]}'
      f'{", centre crop" if p["crop"] else ""}; mean {p["mean"]}, std {p["std"]} '
      '(applied inside the model to uint8 pixels).', '',
      f'Tokenizer: {report["tokenizer_kind"]} (`{report["tokenizer"]}`).', '',
      '```python', 'from mmjax.export.load import load_model, load_tokenizer',
      "model, config = load_model('OUT')",
      "ids = load_tokenizer('OUT').tokenize(['a photo of a cat'], "
      f'{c.max_text_length})', '```', ''])


def _self_check(params: dict, config_json: str, folder: str) -> dict:
  """The export read back (params and config) equals what was meant to be written, bit for bit."""
  loaded, config = load_params(folder)
  flat, back = naming.flatten(params), naming.flatten(loaded)
  differ = sorted(k for k in flat if k not in back or not np.array_equal(flat[k], back[k]))
  same_config = config_lib.to_json(config) == config_json
  return {'parameters': len(flat), 'differ': differ[:5] + ([] if same_config else ['config']),
          'pass': not differ and same_config}


def import_checkpoint(imported: published.Imported, output: str, *, overwrite: bool = False,
                      tokenizer_file: str | None = None, quiet: bool = False) -> dict:
  """Writes `imported` to `output`; returns the report. `tokenizer_file`: SigLIP's
  SentencePiece model (CLIP's BPE ships with mmjax)."""
  staging.check_output(output, overwrite)
  if imported.tokenizer == 'sentencepiece_siglip' and not (
      tokenizer_file and os.path.isfile(tokenizer_file)):
    raise ExportError(f'SigLIP needs its SentencePiece model: the input folder has no '
                      f'spiece.model ({tokenizer_file}); copy it beside config.json.')
  config = imported.config
  config_lib.validate(config)
  abstract = nnx.to_pure_dict(nnx.state(nnx.eval_shape(lambda: build_model(config, nnx.Rngs(0))),
                                        nnx.Param))
  published.check_structure(imported.params, abstract)
  params = jax.tree.map(lambda p: np.asarray(p, np.float32), imported.params)
  config_json = config_lib.to_json(config)
  with staging.staged(output) as tmp:
    with open(os.path.join(tmp, layout.CONFIG), 'w') as f:
      f.write(config_json)
    safetensors_format.save(os.path.join(tmp, layout.SAFETENSORS), params, config_json, 0,
                            'float32')
    if imported.tokenizer == 'clip_bpe':
      tok_name = CLIP_FILE
      ClipTokenizer().save(os.path.join(tmp, tok_name))
    else:
      tok_name = SIGLIP_FILE
      shutil.copyfile(tokenizer_file, os.path.join(tmp, tok_name))
    check = _self_check(params, config_json, tmp)
    if not check['pass']:
      raise ExportError(f'the export written to {tmp} does not read back as written '
                        f'({check["differ"]}): check the disk, then import again.')
    report = {'step': 0, 'dtype': 'float32', 'formats': ['safetensors'],
              'modalities': ['image', 'text'], 'files': {'safetensors': layout.SAFETENSORS},
              'input_sizes': {'image_size': config.model.max_grid * config.model.patch_size,
                              'text_length': config.model.max_text_length},
              'tokenizer': tok_name, 'tokenizer_kind': imported.tokenizer,
              'imported': imported.source, 'preprocess': imported.preprocess,
              'output': os.path.abspath(output), 'self_check': check}
    layout.write_json(os.path.join(tmp, layout.REPORT), report)
    with open(os.path.join(tmp, layout.MODEL_CARD), 'w') as f:
      f.write(_card(imported, report))
    staging.commit(tmp, output)
  if not quiet:
    print(f'imported {imported.source["format"]} -> {output} (image width '
          f'{config.model.width}, text width {config.model.towers.text.width}, common space '
          f'{config.model.embed_dim}; tokenizer {tok_name})')
  return report
