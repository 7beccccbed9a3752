"""Mask functions for SHiRA: which entries of a base weight an adapter trains.

A mask function is called as ``mask_fn(base_layer, r, **kwargs)`` once per adapted layer and returns a 0/1 (or
bool) tensor of the base weight's ``(out_features, in_features)`` shape with exactly ``r * (out_features +
in_features)`` ones (as many trainable values as a rank-``r`` LoRA), on the base weight's device. The keyword
arguments are ``bias`` (whether the layer has one) and, for ``mask_type="random"``, ``random_seed``. Custom masks:

    >>> config = ShiraConfig(r=4, mask_type="my_mask")
    >>> config.mask_fn = my_mask_fn  # (base_layer, r, **kwargs) -> mask
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from peft.tuners.tuners_layer import get_in_out_features


def random_mask(base_layer: nn.Module, r: int, random_seed: int | None = None, **kwargs: Any) -> torch.Tensor:
    """A uniformly random mask with ``r * (out + in)`` ones.

    The positions come from ``torch.randperm`` on a fresh CPU generator (seeded with ``random_seed`` when given, else
    at torch's fixed default seed), so the global RNG is untouched and the same layer shape and seed give the same
    mask on any device; this is the reference implementation's draw, so masks agree with it.
    """
    in_features, out_features = get_in_out_features(base_layer)
    generator = torch.Generator()
    if random_seed is not None:
        generator.manual_seed(random_seed)
    count = r * (in_features + out_features)
    # device="cpu": the generator's device, also inside a `with torch.device("meta")` block
    chosen = torch.randperm(in_features * out_features, generator=generator, device="cpu")[:count]
    mask = torch.zeros(out_features * in_features, dtype=torch.bool, device="cpu")
    mask[chosen] = True
    # quantized layers may have no `weight`: any of the layer's tensors tells its device
    device = next(iter([*base_layer.parameters(), *base_layer.buffers()]), mask).device
    return mask.view(out_features, in_features).to(device)
