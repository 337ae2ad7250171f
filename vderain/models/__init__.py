"""Networks. One file per architecture; STRNet is the spatio-temporal residual network."""
from vderain.models.strnet import STRNet, STRNetConfig, count_macs_per_pixel

__all__ = ["STRNet", "STRNetConfig", "count_macs_per_pixel"]
