"""Writes a corpus of synthetic "ordinary photos" and an open_clip-style table, to reproduce the
loader and converter measurements on real-size, mixed inputs without downloading anything.

  python -m tools.make_photo_corpus --output=/tmp/photos [--copies=4 --seed=0]
  python -m tools.convert_data csv --input=/tmp/photos/train.csv --path_column=filepath \\
      --caption_column=title --output=/tmp/photos_data --name=photos

The images are smooth colour fields with edges, texture and noise (so JPEG sizes are those of
photos: ~1-3 MB at 4000x3000), in the sizes and formats people hold: 16x12 up to 4000x3000, a
3000x60 panorama, portrait, grayscale, RGBA and palette PNG, 16-bit PNG, CMYK and progressive
JPEG, WebP, an EXIF-rotated JPEG; and the broken files a crawl brings: a zero-byte file, a
truncated JPEG, a text file named .jpg and an image in a codec the loader does not read (HEIC).
Captions come in several scripts, one is empty and one is 18,000 characters long.

`train.csv` is tab-separated with a header `filepath<TAB>title` and absolute paths (open_clip's
convention); `broken.txt` lists the broken files, one a line, for the converter's report to
match. `--copies` repeats the set of good images (new pixels each time) to make the corpus larger.
"""

from __future__ import annotations

import argparse
import io
import os
import sys

import numpy as np
from PIL import Image

# (width, height, format, mode, extra) of one set of good images.
GOOD = [
    (16, 12, 'jpeg', 'RGB', {}), (64, 48, 'png', 'RGB', {}), (320, 240, 'jpeg', 'RGB', {}),
    (640, 480, 'jpeg', 'RGB', {'progressive': True}), (800, 600, 'jpeg', 'L', {}),
    (1024, 768, 'png', 'RGBA', {}), (1280, 960, 'png', 'P', {}),
    (1600, 1200, 'jpeg', 'CMYK', {}), (2048, 1536, 'webp', 'RGB', {}),
    (3000, 2000, 'jpeg', 'RGB', {}), (4000, 3000, 'jpeg', 'RGB', {}),
    (3000, 60, 'jpeg', 'RGB', {}), (768, 1024, 'jpeg', 'RGB', {}),
    (480, 640, 'png16', 'RGB', {}), (1200, 900, 'jpeg', 'RGB', {'orientation': 6}),
    (1920, 1080, 'jpeg', 'RGB', {}),
]
CAPTIONS = [
    'A red kite over the beach at sunset', '夕阳下海滩上空的红色风筝', 'طائرة ورقية حمراء فوق الشاطئ',
    'समुद्र तट पर लाल पतंग', 'Красный воздушный змей над пляжем', 'Ein roter Drachen, Strand 🌅',
    '', 'Panorama of a mountain ridge', 'Photo: café "Zürich" — façade, naïve décor',
    '海辺の赤い凧', 'Ένας κόκκινος χαρταετός', 'a dog', 'CMYK print scan of a poster',
    '16-bit scan of a negative', 'rotated phone photo of a cat', 'city at night, 1080p',
]
LONG_CAPTION = ('a very long description of a photograph ' * 460)[:18000]


def photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
  """`[height, width, 3]` uint8: a smooth colour field, a few hard-edged shapes, texture, noise."""
  y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
  x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
  base = rng.uniform(40, 200, (1, 1, 3)).astype(np.float32)
  tilt = rng.uniform(-80, 80, (2, 3)).astype(np.float32)
  img = base + tilt[0] * y + tilt[1] * x
  for _ in range(4):  # rectangles: edges like objects in a scene
    y0, x0 = rng.integers(0, height), rng.integers(0, width)
    img[y0:y0 + rng.integers(1, height // 2 + 2), x0:x0 + rng.integers(1, width // 2 + 2)] += (
        rng.uniform(-60, 60, 3).astype(np.float32))
  freq = rng.uniform(5, 40, 2).astype(np.float32)
  img += 12 * np.sin(2 * np.pi * freq[0] * y) * np.cos(2 * np.pi * freq[1] * x)
  img += rng.normal(0, 6, (height, width, 1)).astype(np.float32)
  return np.clip(img, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray, fmt: str, mode: str, extra: dict) -> bytes:
  buffer = io.BytesIO()
  if fmt == 'png16':  # 16-bit RGB: PIL cannot write it, OpenCV can
    import cv2
    ok, data = cv2.imencode('.png', pixels[..., ::-1].astype(np.uint16) * 257)
    assert ok
    return data.tobytes()
  image = Image.fromarray(pixels, 'RGB')
  image = image.convert(mode) if mode != 'P' else image.quantize(64)
  if fmt == 'jpeg':
    kwargs = {'quality': 90, 'progressive': bool(extra.get('progressive'))}
    if extra.get('orientation'):
      exif = Image.Exif()
      exif[0x0112] = extra['orientation']  # Orientation: 6 = rotate 90° clockwise to view
      kwargs['exif'] = exif.tobytes()
    image.save(buffer, 'JPEG', **kwargs)
  elif fmt == 'webp':
    image.save(buffer, 'WEBP', quality=85)
  else:
    image.save(buffer, 'PNG')
  return buffer.getvalue()


def broken_files(rng: np.random.Generator) -> dict[str, bytes]:
  """{file name: bytes} of the four kinds of undecodable input."""
  jpeg = encode(photo(rng, 640, 480), 'jpeg', 'RGB', {})
  heic = (b'\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic' + rng.bytes(2000))
  return {'empty.jpg': b'', 'truncated.jpg': jpeg[:len(jpeg) // 2],
          'not_an_image.jpg': b'<html><body>404 Not Found</body></html>\n',
          'unknown_codec.heic': heic}


def write(output: str, copies: int = 1, seed: int = 0) -> dict:
  """Writes the corpus under `output`; returns {'rows': n, 'broken': [paths]}."""
  rng = np.random.default_rng(seed)
  folder = os.path.abspath(os.path.join(output, 'images'))
  os.makedirs(folder, exist_ok=True)
  rows, ext = [], {'jpeg': 'jpg', 'png': 'png', 'png16': 'png', 'webp': 'webp'}
  for copy in range(copies):
    for i, (w, h, fmt, mode, extra) in enumerate(GOOD):
      path = os.path.join(folder, f'{copy:03d}_{i:02d}_{w}x{h}_{mode}.{ext[fmt]}')
      with open(path, 'wb') as f:
        f.write(encode(photo(rng, w, h), fmt, mode, extra))
      caption = LONG_CAPTION if (copy, i) == (0, 3) else CAPTIONS[i % len(CAPTIONS)]
      rows.append((path, caption))
  broken = []
  for name, data in broken_files(rng).items():
    path = os.path.join(folder, name)
    with open(path, 'wb') as f:
      f.write(data)
    rows.append((path, f'a broken file ({name})'))
    broken.append(path)
  order = rng.permutation(len(rows))
  with open(os.path.join(output, 'train.csv'), 'w', encoding='utf-8', newline='') as f:
    f.write('filepath\ttitle\n')
    for k in order:
      path, caption = rows[k]
      f.write(f'{path}\t{caption}\n')
  with open(os.path.join(output, 'broken.txt'), 'w') as f:
    f.write(''.join(p + '\n' for p in broken))
  return {'rows': len(rows), 'broken': broken}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--output', required=True)
  parser.add_argument('--copies', type=int, default=1)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args(argv)
  out = write(args.output, args.copies, args.seed)
  print(f'{out["rows"]} rows ({len(out["broken"])} broken) in '
        f'{os.path.join(args.output, "train.csv")}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
