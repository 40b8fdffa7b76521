"""`tools.convert_data --engine=beam`: the same conversion as an Apache Beam pipeline, for corpora
that outgrow one machine's process pool (the `beam` extra: `pip install 'mmjax[beam]'`).

One element per unit (a WebDataset tar, a chunk of table rows, a Parquet row group); a reshuffle
spreads them over the workers, and each runs `mmjax.data.convert.run.convert_unit`, the function the pool
runs: the shards are the same bytes whichever engine wrote them. The launcher then writes the
metadata, tokenizer and report (`mmjax.data.convert.run.finish`). Beam options go in `--beam_args`, e.g.
`--beam_args='--runner=DirectRunner --direct_num_workers=4'` (the default runner here), or a
Dataflow/Flink/Spark runner with its own options. The workers write into `--output`: a folder
they all see, or an object store (`--output=gs://bucket/data`: each worker writes its shard in a
local temporary folder and uploads it whole, `mmjax/data/convert/run.py`), which is what
workers that share no disk need.
"""

from __future__ import annotations

import shlex

from mmjax.data.convert import run as convert_run


def _convert(index: int, job: convert_run.Job) -> dict:
  report = convert_run.convert_unit((job, index))
  return {'shard': report['shard'], 'examples': report['examples']}


def run(job: convert_run.Job, beam_args: str = '', **finish) -> dict:
  """Converts the units not yet done with Beam, then `convert_run.finish(job, **finish)`."""
  import apache_beam as beam  # the optional `beam` extra
  from apache_beam.options.pipeline_options import PipelineOptions
  todo = convert_run.start(job)
  if todo:
    args = shlex.split(beam_args) or ['--runner=DirectRunner']
    with beam.Pipeline(options=PipelineOptions(args)) as pipeline:
      _ = (pipeline
           | 'Units' >> beam.Create(todo)
           | 'Spread' >> beam.Reshuffle()
           | 'Convert' >> beam.Map(_convert, job))
  return convert_run.finish(job, **finish)
