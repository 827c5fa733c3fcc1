"""Data: the built-in datasets, a user's image folders and tables, the prepared cache, and the
on-device batch pipeline.

- `builtin`: Fashion-MNIST, MNIST, CIFAR-10 as uint8 tensors (today's sources and caches).
- `discover`, `images`, `scan`, `prepared`, `user`: a user's images found (ImageFolder, split
  folders, CSV/TSV), their headers read, decoded once into a memory-mapped cache, split.
- `load`: `load_data(source, ...)` for either, and `describe(splits)`, the data card.
- `survey`: `nas data`'s report; `pipeline`: batches augmented and normalised on the device.
"""

from nas.data.builtin import (
    DATASETS,
    DatasetInfo,
    RawData,
    cache_dir,
    cache_file,
    check_source,
    dataset_info,
    debian_dir,
    is_builtin,
    load_builtin,
    load_raw,
    make_splits,
    read_cache,
    read_torchvision,
    torchvision_root,
    write_cache,
)
from nas.data.images import IMAGE_EXTENSIONS, ImageReadError, decode, is_image_name
from nas.data.load import builtin_card, describe, load_data
from nas.data.pipeline import (
    AUGMENTS,
    BatchMaker,
    augment_mode,
    default_augment,
    random_crop_flip,
    random_flip,
)
from nas.data.pool import Progress
from nas.data.splits import DataError, DataSplits, Images, IndexView
from nas.data.survey import inspect
from nas.data.user import DataSummary, default_input_size, peek

__all__ = ["AUGMENTS", "DATASETS", "IMAGE_EXTENSIONS", "BatchMaker", "DataError", "DataSplits",
           "DataSummary", "DatasetInfo", "ImageReadError", "Images", "IndexView", "Progress",
           "RawData", "augment_mode", "builtin_card", "cache_dir", "cache_file", "check_source",
           "dataset_info", "debian_dir", "decode", "default_augment", "default_input_size",
           "describe", "inspect", "is_builtin", "is_image_name", "load_builtin", "load_data",
           "load_raw", "make_splits", "peek", "random_crop_flip", "random_flip", "read_cache",
           "read_torchvision", "torchvision_root", "write_cache"]
