"""Dataset registry: real loaders found through one search path, decoded once into memory tensors."""
from .paths import DataError, DataNotFoundError, cache_dir, data_search_path, portable_path
from .registry import DATASETS, NUM_CLASSES, ImageDataset, load_dataset, register_dataset
from .tensors import TensorBatches, random_crop_flip

__all__ = ["DATASETS", "DataError", "DataNotFoundError", "ImageDataset", "TensorBatches", "cache_dir",
           "data_search_path", "portable_path", "load_dataset", "random_crop_flip", "register_dataset"]
