"""Objectives as units: records declare each task key once; hooks and loss units keep the numbers.

- Fixed-seed losses of shipped configs' tasks equal the values main computed before the
  objectives became units (recorded with main's `task_loss` + the step's M3CoL branch).
- The config defaults are the records' declarations; flat keys still read and construct.
- A toy objective registered from this test module (a record, a model hook that owns a head,
  a loss unit) trains through `config.defaults.task()`, an override, the model and `task_loss`
  without editing a library file.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from mmjax import config as config_lib
from mmjax.config import defaults
from mmjax.core import objectives as objectives_lib
from mmjax.core.objectives import key
from mmjax.core.tasks import Task, task_from_config, task_signatures
from mmjax.models import objective_outputs
from mmjax.models.layers import Dense
from mmjax.models.model import build_model
from mmjax.train import loss_terms, objectives
from mmjax_testing import ROOT, demo_config, synthetic_batch

# Recorded on main (3e08ea2) under tests/conftest.py's XLA flags, with num_layers=1,
# image_size=16, batch 4, synthetic batch seed 3, params Rngs(0), rng key(5): {part: float.hex}.
# The same script on this code gives the same bits; the test allows a few float32 ulps so that
# another CPU's code generation does not fail it (a wrong weight or term moves far more).
RECORDED = {
    ('coca.py:sycoca', 'image_caption'): {  # contrastive + CoCa caption + SyCoCa
        'loss': '0x1.26b5740000000p+3', 'caption/image': '0x1.a50c9a0000000p+2',
        'nce/image_text': '0x1.89bb580000000p+0', 'sycoca/image': '0x1.17bdda0000000p+0'},
    ('m3col.py:fusion', 'image_text'): {  # contrastive + M3CoL's second pass
        'loss': '0x1.a198640000000p+1', 'm3col/image_text': '0x1.82cbac0000000p+0',
        'nce/image_text': '0x1.c0651c0000000p+0'},
    ('m3col.py:fusion', 'fusion_classify'): {  # classification + fusion (aux_weight 0.5)
        'loss': '0x1.26bb1c0000000p+2', 'xent/audio': '0x1.26bb1c0000000p+1',
        'xent/fused': '0x1.26bb1c0000000p+1', 'xent/image': '0x1.26bb1c0000000p+1'},
    ('mobileclip.py', 'image_text'): {  # contrastive + MobileCLIP distillation
        'loss': '0x1.0e84e80000000p+1', 'distill/image_text': '0x1.2de6180000000p-2',
        'nce/image_text': '0x1.d1904c0000000p+0'},
}


def _forward_loss(config, task):
  """The task's loss and parts, as the train step computes them (forward only, jitted)."""
  model = build_model(config, nnx.Rngs(0))
  graphdef, params = nnx.split(model)
  batch = synthetic_batch(task, seed=3)

  @jax.jit
  def run(params, batch):
    model = nnx.merge(graphdef, params)
    rng = jax.random.key(5)
    outputs = model(batch, task, rng=rng, train=True)
    return objectives.task_loss(model, outputs, batch, task, config, rng=rng)
  return jax.device_get(run(params, batch))


@pytest.mark.parametrize('spec,name', list(RECORDED))
def test_losses_equal_main(spec, name):
  config = config_lib.load_config(f'{ROOT}/configs/{spec}', [
      '--config.model.num_layers=1', f'--config.tasks.{name}.image_size=16'])
  task = dataclasses.replace(next(t for t in task_signatures(config) if t.name == name),
                             batch_size=4)
  loss, parts = _forward_loss(config, task)
  got = {'loss': float(loss), **{k: float(v) for k, v in parts.items()}}
  for k, want in RECORDED[(spec, name)].items():
    np.testing.assert_allclose(got[k], float.fromhex(want), rtol=1e-6, atol=0, err_msg=k)


def test_config_defaults_are_the_records_declarations():
  t = defaults.task('ds', 'image,text', 8)
  for record in objectives_lib.OBJECTIVES.values():
    parsed = record.from_config(t)
    assert parsed == record(), record.name   # the config default means the record's default
    assert not parsed.active
  owners = [objectives_lib.owner(f.name) for r in objectives_lib.OBJECTIVES.values()
            for f in r.keys()]
  assert len(owners) == len({f.name for r in objectives_lib.OBJECTIVES.values()
                             for f in r.keys()})   # every key declared by one record

  @dataclasses.dataclass(frozen=True)
  class Again(objectives_lib.Objective):
    name = 'again'
    caption: str = key('', str)
  with pytest.raises(ValueError, match='redeclares'):
    objectives_lib.register(Again)
  assert 'again' not in objectives_lib.OBJECTIVES


def test_flat_keys_read_construct_and_replace():
  t = task_from_config('cap', defaults.task('ds', 'image,text', 8, contrast='image-text',
                                            caption='image', caption_weight=2.0))
  assert t.objective('caption').caption_weight == 2.0 and t.caption_weight == 2.0
  assert [r.name for r in t.active_objectives] == ['contrastive', 'caption']
  flat = Task(name='cap', dataset='ds', split='train', modalities=('image', 'text'),
              batch_size=8, resolutions=t.resolutions, contrast=(('image', 'text'),),
              caption='image', caption_weight=2.0)
  assert flat == t and hash(flat) == hash(t)
  mixed = dataclasses.replace(t, m3col=(('image', 'text'),), batch_size=4)
  assert mixed.m3col == (('image', 'text'),) and mixed.caption == 'image'
  assert mixed.batch_size == 4 and t.m3col == ()
  with pytest.raises(TypeError, match='unknown keys'):
    Task(name='x', dataset='d', modalities=('image',), batch_size=1, resolutions=(),
         captoin='image')


@dataclasses.dataclass(frozen=True)
class PooledScale(objectives_lib.Objective):
  """Toy objective: a linear head on `scale_modality`'s pooled features regresses 1."""
  name = 'pooled_scale'
  scale_modality: str = key('', objectives_lib.text_of)
  scale_weight: float = key(0.5, float)

  @property
  def active(self):
    return bool(self.scale_modality)


class PooledScaleHook(objective_outputs.OutputHook):
  def spec(self, tasks):
    mods = sorted({t.scale_modality for t in tasks if t.scale_modality})
    return tuple(mods) or None

  def build(self, model, cfg, spec, *, rngs, dtype):
    for m in spec:
      setattr(model, f'scale_head_{m}', Dense(cfg.width, 1, ('embed', None), rngs=rngs,
                                              dtype=jnp.float32))

  def modality_done(self, p, m, pooled, lead):
    if m == p.task.scale_modality:
      p.scratch['pooled_scale'] = pooled
      p.logits['pooled_scale'] = getattr(p.model, f'scale_head_{m}')(pooled)[:, 0]


class PooledScaleTerms(loss_terms.LossTerms):
  def terms(self, model, outputs, batch, task, rng):
    return {f'scale/{task.scale_modality}': jnp.mean((outputs['logits']['pooled_scale'] - 1) ** 2)}

  def weight(self, task, key):
    return task.scale_weight if key.startswith('scale/') else None


@pytest.fixture
def toy_objective():
  objectives_lib.register(PooledScale)
  objective_outputs.register('pooled_scale')(PooledScaleHook)
  loss_terms.register('pooled_scale')(PooledScaleTerms)
  yield
  objectives_lib.unregister('pooled_scale')
  del objective_outputs.HOOKS['pooled_scale'], loss_terms.UNITS['pooled_scale']


def test_a_toy_objective_registers_from_outside_the_library(toy_objective):
  assert defaults.task('ds', 'image', 4)['scale_weight'] == 0.5
  config = demo_config('--config.model.num_layers=1',
                       '--config.tasks.image_text.scale_modality=image',
                       '--config.tasks.image_text.scale_weight=0.25')
  task = next(t for t in task_signatures(config) if t.name == 'image_text')
  task = dataclasses.replace(task, batch_size=4)
  assert task.scale_modality == 'image' and task.scale_weight == 0.25
  assert [r.name for r in task.active_objectives] == ['contrastive', 'pooled_scale']
  model = build_model(config, nnx.Rngs(0))
  assert model.scale_head_image.kernel[...].shape == (config.model.width, 1)
  batch = synthetic_batch(task, seed=1)
  outputs = model(batch, task, rng=jax.random.key(2), train=False)
  loss, parts = objectives.task_loss(model, outputs, batch, task, config)
  head = model.scale_head_image
  pooled = model.encode('image', batch['image'])[0]
  want = np.mean((np.asarray(pooled @ head.kernel[...] + head.bias[...])[:, 0] - 1) ** 2)
  np.testing.assert_allclose(parts['scale/image'], want, rtol=1e-5)
  np.testing.assert_allclose(loss, parts['nce/image_text'] + 0.25 * want, rtol=1e-5)


def test_a_record_without_active_or_a_unit_without_terms_is_refused_at_registration():
  @dataclasses.dataclass(frozen=True)
  class Inert(objectives_lib.Objective):
    name = 'inert'
    inert_weight: float = key(0.0, float)

  with pytest.raises(ValueError, match="objective 'inert' needs an `active` property"):
    objectives_lib.register(Inert)
  assert 'inert' not in objectives_lib.OBJECTIVES
  with pytest.raises(ValueError, match="objective 'inert' need a `terms` method"):
    loss_terms.register('inert')(type('NoTerms', (loss_terms.LossTerms,), {}))
  assert 'inert' not in loss_terms.UNITS
