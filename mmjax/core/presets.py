"""Encoder size presets: layers, width, heads, MLP hidden size.

`base` and `large` are the IMP-B / IMP-L (ViT-B / ViT-L) shapes; `tiny` trains on CPU in minutes.
"""

SIZES = {
    'tiny': dict(num_layers=4, width=128, num_heads=4, mlp_dim=512),
    'small': dict(num_layers=8, width=384, num_heads=6, mlp_dim=1536),
    'base': dict(num_layers=12, width=768, num_heads=12, mlp_dim=3072),
    'large': dict(num_layers=24, width=1024, num_heads=16, mlp_dim=4096),
}
