"""Which packages the wheel holds (the metadata is in pyproject.toml).

`mmjax/` and its subpackages as found, plus the checkout's `configs/` and `tools/` installed as
`mmjax.configs` (so `--config=demo` finds the shipped configs, and `--sweep=NAME` the sweeps in
`configs/sweeps/`), `mmjax.tools` (behind `mmjax-aot`) and `examples/` as `mmjax.examples`.
In the checkout they stay `configs/`, `python -m tools.<name>` and `examples/`.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=['mmjax', 'mmjax.*']) + ['mmjax.configs', 'mmjax.tools',
                                                            'mmjax.configs.sweeps',
                                                            'mmjax.examples'],
    package_dir={'mmjax.configs': 'configs', 'mmjax.tools': 'tools',
                 'mmjax.configs.sweeps': 'configs/sweeps',   # `--sweep=NAME` when installed
                 'mmjax.examples': 'examples'},   # the standalone loader the model card cites
    # Data files beside the code (class-name lists, prompt sets, tables) travel with it.
    package_data={'': ['*.json', '*.txt', '*.csv', '*.tsv', '*.yaml']},
)
