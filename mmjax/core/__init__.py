"""The ground floor every stage may use: sharding (`partitioning.py`: mesh, logical-axis rules,
`constrain`, batch shardings), the task description (`tasks.py`), the modality table
(`modalities.py`), the objective records (`objectives.py`), the fixed vocabularies a config
chooses from (`choices.py`), model size presets, and checkpoint I/O (`checkpointing.py`: train
checkpoints; `exports/`: the export files' read side, i.e. their layout, params-only orbax,
safetensors, parameter names)."""
