"""sabn: Sandwich Batch Normalization (Gong et al., WACV 2022) and its family as drop-in layers.

    from sabn import build_norm
    norm = build_norm("sabn", 256, num_conditions=10)
    h = norm(x, y)          # y: LongTensor [N] of class labels, or one int for the whole batch
"""
from .batchnorm import (AuxBatchNorm2d, BatchNorm2d, CategoricalConditionalBatchNorm2d,
                        ConditionalBatchNorm2d, SandwichAuxBatchNorm2d, SandwichBatchNorm2d,
                        SplitSandwichBatchNorm2d)
from .cpu_kernels import cpu_kernels_status, disable_cpu_kernels, enable_cpu_kernels, resolve_cpu_kernels
from .convert import conditional_layers, convert_norms, route_condition, set_condition
from .functional import (conditional_batch_norm, sample_affine_batch_norm,
                         sample_affine_batch_norm_reference, set_condition_value_checks)
from .conditions import condition_value_checks
from .instancenorm import AdaIN, AdaptiveInstanceNorm2d, SandwichAdaIN
from .registry import build_norm, get_norm_spec, list_norms, norm_layer, register_norm
from .sync import SyncBatchNorm2d, SyncConditionalBatchNorm2d, convert_sync_norms

__version__ = "0.1.0"

__all__ = [
    "AdaIN", "AdaptiveInstanceNorm2d", "AuxBatchNorm2d", "BatchNorm2d",
    "CategoricalConditionalBatchNorm2d", "ConditionalBatchNorm2d", "SandwichAdaIN",
    "SandwichAuxBatchNorm2d", "SandwichBatchNorm2d", "SplitSandwichBatchNorm2d", "build_norm",
    "conditional_batch_norm", "conditional_layers", "convert_norms", "cpu_kernels_status", "disable_cpu_kernels",
    "enable_cpu_kernels", "get_norm_spec", "list_norms", "norm_layer", "resolve_cpu_kernels",
    "register_norm", "route_condition", "sample_affine_batch_norm",
    "sample_affine_batch_norm_reference", "set_condition", "set_condition_value_checks", "condition_value_checks",
    "SyncBatchNorm2d", "SyncConditionalBatchNorm2d", "convert_sync_norms",
]
