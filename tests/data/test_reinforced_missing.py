"""A reinforced dataset that was never written is named with the command that writes it."""

import pytest

from mmjax.data import sources
from mmjax.data.errors import DataError


def test_missing_reinforced_copy_names_tools_reinforce_data(tmp_path):
  with pytest.raises(DataError) as e:
    sources.open_source('mmjax_digits_reinforced', 'train', str(tmp_path))
  msg = str(e.value)
  assert 'python -m tools.reinforce_data --teacher=EXPORT --dataset=mmjax_digits' in msg
  assert f'--output={tmp_path}' in msg and 'tools.build_data' not in msg and '\n' not in msg
