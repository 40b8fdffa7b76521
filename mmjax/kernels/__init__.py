"""Pallas kernels, each beside its pure-JAX reference, and the switch that picks between them."""

from mmjax.kernels.attention_reference import attention_reference
from mmjax.kernels.backend import resolve_backend, resolve_interpret
from mmjax.kernels.block_routing import route_blocks
from mmjax.kernels.flash_attention import flash_attention
from mmjax.kernels.grouped_matmul import grouped_matmul
from mmjax.kernels.grouped_matmul_reference import grouped_matmul_reference
from mmjax.kernels.routed_attention import routed_attention
from mmjax.kernels.routed_reference import routed_attention_reference
from mmjax.kernels.select import (ATTENTION_IMPLS, RAGGED_MATMUL_IMPLS, attention, ragged_matmul,
                                  resolve_impl, resolve_routed_impl, routed)
from mmjax.kernels.select import SCAN_IMPLS, selective_scan
from mmjax.kernels.selective_scan import selective_scan_pallas
from mmjax.kernels.selective_scan_reference import selective_scan_reference
from mmjax.kernels.windows import window_order, window_order_inverse

__all__ = [
    'ATTENTION_IMPLS', 'RAGGED_MATMUL_IMPLS', 'attention', 'attention_reference',
    'flash_attention', 'grouped_matmul', 'grouped_matmul_reference', 'ragged_matmul', 'resolve_backend', 'resolve_impl',
    'resolve_interpret', 'resolve_routed_impl', 'route_blocks', 'routed', 'routed_attention',
    'routed_attention_reference',
    'window_order', 'window_order_inverse',
    'SCAN_IMPLS', 'selective_scan', 'selective_scan_pallas', 'selective_scan_reference',
]
