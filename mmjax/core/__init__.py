"""The ground floor every stage may use: sharding (`partitioning.py`: mesh, logical-axis rules,
`constrain`, batch shardings), the task description (`tasks.py`), model size presets, and
checkpoint I/O (`checkpointing.py`: train checkpoints; `params_io.py`, `params_only.py`,
`exports/`: the export files' layout, params-only orbax, safetensors, parameter names)."""
