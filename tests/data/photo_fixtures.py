"""Small images in the formats photos come in, the four kinds of undecodable file, and a
converted-layout dataset written straight from bytes (no converter checks)."""

import io
import os

import cv2
import numpy as np
from PIL import Image

from mmjax.data import tfds_writer
from mmjax.data.convert import examples as convert_examples


def png(pixels: np.ndarray) -> bytes:
  ok, data = cv2.imencode('.png', np.ascontiguousarray(pixels[..., ::-1]))
  assert ok
  return data.tobytes()


def jpeg(pixels: np.ndarray, **kw) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(pixels).save(buffer, 'JPEG', quality=90, **kw)
  return buffer.getvalue()


def pixels(seed: int, h: int, w: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


BROKEN = {  # kind -> (bytes, words the reason must hold)
    'zero_byte': (b'', 'zero-byte file'),
    'truncated': (jpeg(pixels(0, 40, 48))[:300], 'truncated or damaged JPEG'),
    'not_an_image': (b'<html>404 Not Found</html>', 'not an image'),
    'unknown_codec': (b'\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic' + bytes(500),
                      'unknown codec: HEIC'),
}


def write_dataset(root: str, name: str, images: list[bytes], captions=None) -> None:
  """A converted-layout dataset holding `images` as given (no converter checks)."""
  options = convert_examples.ExampleOptions('image')
  features = convert_examples.features(options)
  folder = os.path.join(root, name, '1.0.0')
  os.makedirs(folder, exist_ok=True)
  captions = captions or [[f'photo {i}'] for i in range(len(images))]
  records = [features.serialize_example({'image': im, 'captions': c, 'key': str(i)})
             for i, (im, c) in enumerate(zip(images, captions))]
  tfds_writer.write_shard(tfds_writer.shard_path(folder, name, 'train', 0, 1), records)
  tfds_writer.write_metadata(folder, name, '1.0.0', features, {'train': [len(records)]})


