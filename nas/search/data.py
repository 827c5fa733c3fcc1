"""The data of a search: which images, at what size, how augmented; chosen once when the study
is created, then recorded, and every later run and worker loads exactly that version."""

from __future__ import annotations

from typing import Any

from nas.data import DataSplits, describe, is_builtin, load_data
from nas.search.request import SearchRequest


def choose_input_size(req: SearchRequest, source: str) -> int:
    """The side of the networks' input when the study does not record one: the space's fixed
    input size, else a built-in dataset's own, else the images' natural size (median shorter
    side, at most 224) brought within the space's input_sizes."""
    if "input_size" in req.space.fixed:
        return int(req.space.fixed["input_size"])
    if is_builtin(source):
        from nas.data import dataset_info

        return dataset_info(source).image_size
    from nas.data import peek

    natural = peek(source).input_size
    if req.space.input_sizes is None:
        return natural
    low, high = req.space.input_sizes
    return min(max(natural, low), high)


def load_search_data(req: SearchRequest, settings: dict[str, Any], device: str,
                     progress: Any = None) -> DataSplits:
    """The study's data on `device`, refused in one line when the space is not for its size or
    the images changed since the study recorded them. Fills in `settings` what was chosen (the
    input size, channels, user data's augmentation, the fingerprint and the data card), which a
    new study records."""
    source = settings["dataset"]
    if settings.get("input_size") is None:
        settings["input_size"] = req.input_size or choose_input_size(req, source)
    req.space.check_input_size(settings["input_size"])
    data = load_data(source, req.data_dir, device, seed=settings["seed"],
                     input_size=None if is_builtin(source) else settings["input_size"],
                     channels=settings.get("channels"), progress=progress,
                     fingerprint=settings.get("data_fingerprint"))
    settings["channels"] = data.in_channels
    if data.is_user_data and settings.get("augment") is None:
        settings["augment"] = data.augment  # recorded, so reuse and resume stay honest
    settings["data_fingerprint"] = data.fingerprint
    settings["data_card"] = describe(data)
    return data


__all__ = ["choose_input_size", "load_search_data"]
