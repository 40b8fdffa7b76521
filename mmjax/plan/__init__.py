"""Pod planning, used by `tools.aot` and `tools.bench_step`: TPU topologies, the chip table,
FLOP counting, the HLO collectives walk and the compile report."""
