"""Ordinary photos: every kind of undecodable input is named, skipped by the converter and
replaced and counted by the loader; a cached split decodes its images only when they fit the
cache decoded, and mixed sizes are resized one by one, never padded to the largest."""

import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import make_config
from mmjax.core.tasks import Resolution, Task
from mmjax.data import batching, image_codec, pipeline, readers, sources, transforms
from photo_fixtures import BROKEN, jpeg, pixels, png, write_dataset


@pytest.mark.parametrize('kind', sorted(BROKEN))
def test_decoder_names_each_kind_of_undecodable_input(kind):
  data, words = BROKEN[kind]
  with pytest.raises(image_codec.CorruptImage, match=words):
    image_codec.decode(data)
  with pytest.raises(image_codec.CorruptImage, match=words):
    image_codec.image_size(data)


def _task(name: str, batch: int, size: int = 16) -> Task:
  return Task(name='it', dataset=name, split='train', modalities=('image',), batch_size=batch,
              resolutions=(Resolution(image_size=size),))


@pytest.mark.parametrize('kind', sorted(BROKEN))
def test_loader_replaces_and_counts_each_kind(tmp_path, kind):
  root, name = str(tmp_path), f'broken_{kind}'
  good = [png(pixels(i, 20 + 4 * i, 24)) for i in range(3)]
  write_dataset(root, name, good[:2] + [BROKEN[kind][0]] + good[2:])
  for cache_mb in (0, 64):  # read from disk; held in memory
    sources._open.cache_clear()
    config = make_config(root, cache_mb=cache_mb, threads=0)
    it = pipeline.make_train_iterator(_task(name, 4), config, seed=0)
    batch = next(it)                       # one batch = the whole epoch
    it.close()
    assert pipeline.skipped_examples(batch) == 1
    assert np.all(batch['image'].reshape(4, -1).max(1) > 0)  # the replacement holds an image
    evals = list(pipeline.make_eval_batches(name, 'train', ('image',), Resolution(image_size=16),
                                            config, batch_size=4))
    assert evals[0]['valid'].tolist() == [True, True, False, True]


def test_cache_decodes_only_what_fits_decoded_and_gives_the_uncached_pixels(tmp_path,
                                                                           monkeypatch):
  """PNG (no DCT-domain scaling), so every route gives the same pixels: decoded in memory,
  encoded in memory, and read from disk; ragged decoded images are never padded together."""
  root, name = str(tmp_path), 'mixed'
  sizes = [(12, 16), (60, 8), (33, 47), (20, 20), (90, 30), (7, 9)]
  images = [png(pixels(i, h, w)) for i, (h, w) in enumerate(sizes)]
  write_dataset(root, name, images)
  need = sum(h * w * 3 for h, w in sizes)
  base = sources.open_source(name, 'train', root, 0)
  assert readers.decoded_bytes(base.read(range(6), ['image'])['image']) == need
  fits = readers.InMemorySource(base, decoded_mb=need / 2**20)
  too_big = readers.InMemorySource(base, decoded_mb=(need - 1) / 2**20)
  assert fits.decoded and not too_big.decoded
  column = fits.read([0, 1], ['image'])['image']
  assert column.dtype == object and column[1].shape == (60, 8, 3)   # ragged, as decoded
  np.testing.assert_array_equal(column[0], pixels(0, 12, 16))
  assert isinstance(too_big.read([1], ['image'])['image'][0], bytes)

  def no_padding(values):
    raise AssertionError('a batch of images was padded to its largest')
  monkeypatch.setattr(transforms, 'stack_ragged', no_padding)
  task = _task(name, 6, size=24)
  res = task.resolution
  options = pipeline.DataOptions()
  mapping = {'image': 'image'}
  out = []
  for source in (fits, too_big, base):
    builder = batching.BatchBuilder(source, mapping, res, options)
    out.append(builder(np.arange(6), np.random.default_rng(3))['image'])
    assert out[-1].shape == (6, 24, 24, 3)
  np.testing.assert_array_equal(out[0], out[1])
  np.testing.assert_array_equal(out[0], out[2])


def test_cache_of_one_size_stays_one_array_and_batched(tmp_path):
  root, name = str(tmp_path), 'same'
  write_dataset(root, name, [png(pixels(i, 16, 16)) for i in range(4)])
  source = readers.InMemorySource(sources.open_source(name, 'train', root, 0))
  column = source.read([2, 0], ['image'])['image']
  assert column.dtype == np.uint8 and column.shape == (2, 16, 16, 3)
  np.testing.assert_array_equal(column[0], pixels(2, 16, 16))


@pytest.mark.parametrize('orientation', range(1, 9))
def test_exif_orientation_matches_pil(orientation):
  image = pixels(orientation, 6, 10)
  exif = Image.Exif()
  exif[0x0112] = orientation
  data = jpeg(image, exif=exif.tobytes())
  assert image_codec.exif_orientation(data) == orientation
  want = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert('RGB'))
  got = image_codec.orient(image_codec.decode(data), orientation)
  np.testing.assert_array_equal(got, want)


def test_empty_caption_list_trains_and_evaluates_as_empty_text(tmp_path):
  from mmjax.data.tokenizer import Tokenizer, train_sentencepiece
  root, name = str(tmp_path), 'uncaptioned'
  write_dataset(root, name, [png(pixels(i, 16, 16)) for i in range(4)],
                captions=[['a cat'], [], ['a dog', 'two dogs'], []])
  train_sentencepiece(['a cat', 'a dog', 'two dogs'] * 5, str(tmp_path / 't.model'), 30)
  tok = Tokenizer(str(tmp_path / 't.model'))
  source = sources.open_source(name, 'train', root, 0)
  res = Resolution(image_size=16, text_length=8)
  builder = batching.BatchBuilder(source, {'image': 'image', 'text': 'captions'}, res,
                                  pipeline.DataOptions(), tok)
  for rng in (np.random.default_rng(0), None):
    batch = builder(np.arange(4), rng)
    assert batch['text_mask'].sum(1).tolist()[1::2] == [0, 0]
    assert batch['text_mask'][0].sum() > 0 and batch['text_mask'][2].sum() > 0


class _Videos(readers.Source):
  """Decoded videos of different lengths and sizes, as a cached split holds them."""

  def __init__(self, videos):
    spec = readers.FeatureSpec('video', 'video', (None, None, None, 3), 'uint8')
    super().__init__('vids', 'train', {'video': spec}, {'train': len(videos)}, 0)
    self.videos = videos

  def _records(self, indices):
    return [{'video': self.videos[i]} for i in indices]

  def read(self, indices, names):
    return {'video': readers._objects([self.videos[i] for i in indices])}


def test_ragged_decoded_videos_are_resized_one_by_one(monkeypatch):
  rng = np.random.default_rng(0)
  videos = [rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8)
            for t, h, w in [(5, 12, 20), (9, 30, 16), (3, 8, 8)]]
  source = _Videos(videos)
  monkeypatch.setattr(transforms, 'stack_ragged', lambda v: pytest.fail('padded'))
  res = Resolution(image_size=8, num_frames=4)
  builder = batching.BatchBuilder(source, {'video': 'video'}, res, pipeline.DataOptions())
  batch = builder(np.arange(3), None)['video']
  assert batch.shape == (3, 4, 8, 8, 3)
  for i, v in enumerate(videos):   # alone, each is a plain (non-ragged) batch of one
    alone = batching.BatchBuilder(_Videos([v]), {'video': 'video'}, res, pipeline.DataOptions())
    monkeypatch.setattr(alone.source, 'read', lambda idx, names, v=v: {'video': v[None]})
    np.testing.assert_array_equal(batch[i], alone(np.arange(1), None)['video'][0])


def _png_with(extra: bytes) -> tuple[bytes, np.ndarray]:
  """A PNG with `extra` chunk bytes after IHDR, and its pixels."""
  rgb = np.random.default_rng(3).integers(0, 255, (6, 5, 3), dtype=np.uint8)
  plain = png(rgb)
  return plain[:33] + extra + plain[33:], rgb   # 33: signature + IHDR


def _chunk(kind: bytes, body: bytes) -> bytes:
  import struct
  import zlib
  return (struct.pack('>I', len(body)) + kind + body
          + struct.pack('>I', zlib.crc32(kind + body) & 0xffffffff))


def test_png_colour_profile_warnings_are_silenced_and_others_kept(capfd):
  """libpng prints iCCP warnings ("known incorrect sRGB profile", "too short", ...) from C; the
  iCCP chunk is dropped before decoding (same pixels), other libpng warnings still show."""
  from mmjax.data.convert import media as convert_media
  import zlib
  icc = _chunk(b'iCCP', b'bad profile\x00\x00' + zlib.compress(b'junk' * 40))
  with_icc, rgb = _png_with(icc)
  capfd.readouterr()
  assert convert_media.check_image(with_icc) == (6, 5)          # the conversion's check
  np.testing.assert_array_equal(image_codec.decode(with_icc), rgb)
  assert image_codec.without_icc_profile(with_icc) == png(rgb)
  err = capfd.readouterr().err
  assert 'iCCP' not in err and 'libpng' not in err, err
  # Two profiles and an sRGB chunk with an invalid intent: only the iCCP chunks go.
  both, _ = _png_with(icc + _chunk(b'sRGB', b'\x07') + icc)
  assert image_codec.without_icc_profile(both) == png(rgb)[:33] + _chunk(b'sRGB', b'\x07') + \
      png(rgb)[33:]
  np.testing.assert_array_equal(image_codec.decode(both), rgb)
  err = capfd.readouterr().err
  assert 'iCCP' not in err and 'libpng warning: sRGB: invalid' in err, err
  jpg = jpeg(rgb)
  assert image_codec.without_icc_profile(jpg) is jpg
