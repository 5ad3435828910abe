"""Image models on MONAI's networks, 2-D or 3-D by the input (`input_shape` = [C, *spatial]).

* `small_cnn`: stages of MONAI `Convolution` blocks (conv-batchnorm-ReLU, one at stride 1 and one at
  stride 2), global average pooling, dropout and a linear layer: trains in minutes on 2 CPU cores.
* `densenet121`: MONAI's `DenseNet121` (Huang et al. 2017).
* `resnet18`: MONAI's `resnet18` (He et al. 2016), first convolution at stride 2.
* `unet`, `basic_unet`, `segresnet`: MONAI's `UNet`, `BasicUNet` and `SegResNet` for segmentation;
  `SegmentationEstimator` predicts images larger than the training images (patches) with MONAI's
  `sliding_window_inference`.

Each module names the layer Grad-CAM reads (`cam_layer`, the last convolutional feature map) and its
output layer (`head_layer`, replaced or kept trainable when fine-tuning with `freeze: backbone`).

>>> import torch
>>> SmallCNN(in_dim=1, out_dim=3, input_shape=[1, 32, 32])(torch.zeros(2, 1, 32, 32)).shape
torch.Size([2, 3])
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from medflow.models.base import DeepEstimator

__all__ = ["SmallCNNConfig", "DenseNetConfig", "ResNetConfig", "SmallCNN", "build_densenet121", "build_resnet18",
           "UNetConfig", "BasicUNetConfig", "build_unet", "build_basic_unet", "SegmentationEstimator",
           "SegResNetConfig", "build_segresnet"]


class SmallCNNConfig(BaseModel):
    """Hyper-parameters of the small CNN."""

    model_config = ConfigDict(extra="forbid")
    # two stages keep a 16 x 16 feature map at 64 x 64 input: Grad-CAM finds 5-pixel lesions there (pointing game
    # 0.64 on the phantoms), where three stages (8 x 8) point at them no better than 0.10 (docs/imaging.md)
    channels: list[int] = Field([16, 32], min_length=1, max_length=6, description="width of each stage")
    dropout: float = Field(0.1, ge=0, lt=1)


class DenseNetConfig(BaseModel):
    """Hyper-parameters of MONAI's DenseNet121."""

    model_config = ConfigDict(extra="forbid")
    init_features: int = Field(64, ge=4, le=256)
    growth_rate: int = Field(32, ge=4, le=128)
    dropout: float = Field(0.0, ge=0, lt=1)


class ResNetConfig(BaseModel):
    """Hyper-parameters of MONAI's ResNet-18."""

    model_config = ConfigDict(extra="forbid")
    widen_factor: float = Field(1.0, gt=0, le=4)


def _dims(input_shape: list[int] | None, in_dim: int) -> tuple[int, int]:
    if not input_shape or len(input_shape) not in (3, 4):
        raise ValueError(f"image models need input of shape [C, H, W] or [C, D, H, W], got {input_shape}")
    return len(input_shape) - 1, int(input_shape[0])


class SmallCNN(nn.Module):
    """Conv stages (MONAI `Convolution`), global average pooling, a linear head."""

    cam_layer = "features"
    head_layer = "head"

    def __init__(self, in_dim: int, out_dim: int, input_shape: list[int] | None = None,
                 channels: list[int] | tuple[int, ...] = (16, 32), dropout: float = 0.1) -> None:
        super().__init__()
        from monai.networks.blocks import Convolution

        dims, c_in = _dims(input_shape, in_dim)
        layers: list[nn.Module] = []
        for c in channels:
            layers += [Convolution(dims, c_in, c, strides=1, kernel_size=3, norm="batch", act="relu"),
                       Convolution(dims, c, c, strides=2, kernel_size=3, norm="batch", act="relu")]
            c_in = c
        self.features = nn.Sequential(*layers)
        pool = nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1)
        self.pool = nn.Sequential(pool, nn.Flatten(), nn.Dropout(dropout))
        self.head = nn.Linear(c_in, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)))


def build_densenet121(in_dim: int, out_dim: int, input_shape: list[int] | None = None, init_features: int = 64,
                      growth_rate: int = 32, dropout: float = 0.0) -> nn.Module:
    from monai.networks.nets import DenseNet121

    dims, c_in = _dims(input_shape, in_dim)
    net = DenseNet121(spatial_dims=dims, in_channels=c_in, out_channels=out_dim, init_features=init_features,
                      growth_rate=growth_rate, dropout_prob=dropout)
    net.cam_layer, net.head_layer = "class_layers.relu", "class_layers.out"
    return net


def build_resnet18(in_dim: int, out_dim: int, input_shape: list[int] | None = None,
                   widen_factor: float = 1.0) -> nn.Module:
    from monai.networks.nets import resnet18

    dims, c_in = _dims(input_shape, in_dim)
    net = resnet18(spatial_dims=dims, n_input_channels=c_in, num_classes=out_dim, conv1_t_stride=2,
                   widen_factor=widen_factor)
    net.cam_layer, net.head_layer = "layer4", "fc"
    return net


class UNetConfig(BaseModel):
    """Hyper-parameters of MONAI's UNet (the imaging anchor's: 16-32-64-128, one residual unit)."""

    model_config = ConfigDict(extra="forbid")
    channels: list[int] = Field([16, 32, 64, 128], min_length=2, max_length=6)
    num_res_units: int = Field(1, ge=0, le=4)
    dropout: float = Field(0.0, ge=0, lt=1)
    # MONAI's default is instance norm, which divides a window of constant background by ~0 at inference and
    # then finds "brain" far outside the head (docs/imaging.md); batch norm uses the training statistics
    norm: Literal["batch", "instance"] = "batch"


class BasicUNetConfig(BaseModel):
    """Hyper-parameters of MONAI's BasicUNet (six feature widths)."""

    model_config = ConfigDict(extra="forbid")
    features: list[int] = Field([16, 16, 32, 64, 128, 16], min_length=6, max_length=6)
    dropout: float = Field(0.0, ge=0, lt=1)


def build_unet(in_dim: int, out_dim: int, input_shape: list[int] | None = None,
               channels: list[int] | tuple[int, ...] = (16, 32, 64, 128), num_res_units: int = 1,
               dropout: float = 0.0, norm: str = "batch") -> nn.Module:
    from monai.networks.nets import UNet

    dims, c_in = _dims(input_shape, in_dim)
    return UNet(spatial_dims=dims, in_channels=c_in, out_channels=out_dim, channels=tuple(channels),
                strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, dropout=dropout, norm=norm)


def build_basic_unet(in_dim: int, out_dim: int, input_shape: list[int] | None = None,
                     features: list[int] | tuple[int, ...] = (16, 16, 32, 64, 128, 16),
                     dropout: float = 0.0) -> nn.Module:
    from monai.networks.nets import BasicUNet

    dims, c_in = _dims(input_shape, in_dim)
    return BasicUNet(spatial_dims=dims, in_channels=c_in, out_channels=out_dim, features=tuple(features),
                     dropout=dropout)


class SegmentationEstimator(DeepEstimator):
    """A segmentation network: label maps out; inputs larger than the training images (patches) are predicted
    with MONAI's sliding-window inference (window = the training image size, 25% overlap, Gaussian blending)."""

    def probabilities(self, x) -> np.ndarray:
        """Softmax class probabilities per voxel, (n, K + 1, *spatial)."""
        return torch.softmax(torch.as_tensor(self.outputs(x)), dim=1).numpy()

    def outputs(self, x):
        x = self.inputs(x)
        window = tuple(self.input_shape[1:]) if self.input_shape else tuple(x.shape[2:])
        if all(a <= b for a, b in zip(x.shape[2:], window, strict=True)):
            return super().outputs(x)
        from monai.inferers import sliding_window_inference

        self.module.eval()
        out = []
        with torch.no_grad():
            for case in x:
                t = torch.as_tensor(np.ascontiguousarray(case[None]))
                out.append(sliding_window_inference(t, window, 4, self.module, overlap=0.25, mode="gaussian")[0])
        return torch.stack(out).numpy()


class SegResNetConfig(BaseModel):
    """Hyper-parameters of MONAI's SegResNet (Myronenko 2018); inputs divisible by 8."""

    model_config = ConfigDict(extra="forbid")
    init_filters: int = Field(8, ge=4, le=64)
    dropout: float = Field(0.0, ge=0, lt=1)
    # group norm (MONAI's default) has instance norm's problem on constant windows; see UNetConfig.norm
    norm: Literal["batch", "group", "instance"] = "batch"


def build_segresnet(in_dim: int, out_dim: int, input_shape: list[int] | None = None, init_filters: int = 8,
                    dropout: float = 0.0, norm: str = "batch") -> nn.Module:
    from monai.networks.nets import SegResNet

    dims, c_in = _dims(input_shape, in_dim)
    spatial = (input_shape or [])[1:]
    if any(s % 8 for s in spatial):
        raise ValueError(f"segresnet halves the image 3 times: its size must be divisible by 8, got {spatial}")
    norm_arg = ("GROUP", {"num_groups": min(8, init_filters)}) if norm == "group" else norm
    return SegResNet(spatial_dims=dims, init_filters=init_filters, in_channels=c_in, out_channels=out_dim,
                     dropout_prob=dropout or None, norm=norm_arg)
