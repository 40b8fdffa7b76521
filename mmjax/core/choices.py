"""The fixed vocabularies a config chooses from, each stated once (ground floor: no JAX).

The config checks, the mesh builders (`core/partitioning`, `plan/topology`), the kernel
dispatch (`kernels/select`) and the model read these names from here.
"""

# Mesh axes, in the order every mesh is built: `config.mesh.<axis>` sizes, `dcn_<axis>` factors.
MESH_AXES = ('data', 'fsdp', 'tensor', 'expert')
# The axes a global batch is split over (examples never split over `tensor`).
BATCH_AXES = ('data', 'fsdp', 'expert')

# Kernel implementations (`model.attention_impl`, `model.moe.impl`, `model.mamba.impl`):
# 'auto' picks per backend (kernels/select.py says how).
ATTENTION_IMPLS = ('auto', 'xla', 'pallas', 'cudnn')
RAGGED_MATMUL_IMPLS = ('auto', 'xla', 'pallas')
SCAN_IMPLS = ('auto', 'xla', 'pallas')

# Model choices.
COMPUTE_DTYPES = ('float32', 'bfloat16')      # model.dtype (parameters stay float32)
ENCODER_POOLINGS = ('mean', 'cls')            # model.pooling of the shared encoder
TOWER_POOLINGS = ('mean', 'cls', 'eot', 'last', 'map')   # model.towers.<modality>.pooling
ENCODER_SHARINGS = ('shared', 'per_modality')  # model.encoder_sharing
