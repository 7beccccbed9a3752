"""The parts of ShadowPEFT (``peft.tuners.shadow``) that are transformers objects: the pair of key/value caches of
generation (``ShadowCache``), the standalone shadow model of ``unload_shadow()`` (``DetachedShadowModel``), and the
loading of a pretrained shadow backbone. The core reaches them as method components of the host registry.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, Cache, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast, SequenceClassifierOutput
from transformers.utils import cached_file

from peft.tuners.shadow.model import pool_last_token, sequence_classification_loss, shifted_cross_entropy

# a pretrained backbone saved together with its trained projection to a larger base model's width
_PROJECTED_MODEL_TYPE = "causal_lm_with_hidden_projection"


class ShadowCache(Cache):
    """The base model's cache (``base``) and the shadow backbone's (``shadow``), passed between decoding steps as one
    ``past_key_values``.

    Changes of the batch or sequence layout (reset, reorder, crop, repeat, select) apply to both; everything else
    (attention updates, lengths, masks, unknown attributes) is the base cache's. ``ShadowModel`` gives the base model
    only ``base`` and the backbone only ``shadow``. It cannot be compiled (the two caches differ in layers and width)
    nor turned into a legacy tuple.
    """

    def __init__(self, base: Any = None, shadow: Any = None) -> None:
        # Cache.__init__ is not called: the storage belongs to the two caches
        self.base = base
        self.shadow = shadow

    def __getattr__(self, name: str) -> Any:
        base = self.__dict__.get("base")
        if base is None:
            raise AttributeError(name)
        return getattr(base, name)

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return 0 if self.base is None else self.base.get_seq_length(layer_idx)

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_initialized(self) -> bool:
        caches = [cache for cache in (self.base, self.shadow) if cache is not None]
        return bool(caches) and all(getattr(cache, "is_initialized", True) for cache in caches)

    def to_legacy_cache(self) -> Any:
        raise NotImplementedError("A ShadowCache holds two caches; one legacy cache tuple cannot represent it.")

    @classmethod
    def from_legacy_cache(cls, past_key_values: Any = None) -> ShadowCache:
        raise NotImplementedError("A ShadowCache needs a base and a shadow Cache; build it from both.")

    def __getitem__(self, layer_idx: int) -> Any:
        return self.base[layer_idx]

    def __iter__(self) -> Any:
        return iter(self.base)

    def __len__(self) -> int:
        return 0 if self.base is None else len(self.base)

    def __repr__(self) -> str:
        return f"ShadowCache(base={self.base!r}, shadow={self.shadow!r})"


def _on_both(name: str) -> Any:
    def method(self: ShadowCache, *args: Any, **kwargs: Any) -> None:
        for cache in (self.base, self.shadow):
            if cache is not None and hasattr(cache, name):
                getattr(cache, name)(*args, **kwargs)

    method.__name__ = name
    method.__doc__ = f"``{name}`` on both caches."
    return method


def _on_base(name: str, as_property: bool = False) -> Any:
    def method(self: ShadowCache, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.base, name)(*args, **kwargs)

    def get(self: ShadowCache) -> Any:
        return getattr(self.base, name)

    method.__name__ = name
    return property(get, doc=f"The base cache's ``{name}``.") if as_property else method


# the methods and properties Cache defines are the base cache's, except those that change the layout (both caches)
for _name in ("reset", "reorder_cache", "crop", "batch_repeat_interleave", "batch_select_indices"):
    setattr(ShadowCache, _name, _on_both(_name))
for _name in (
    "update",
    "update_conv_state",
    "update_recurrent_state",
    "update_indexer",
    "get_mask_sizes",
    "get_max_length",
    "get_query_offset",
    "get_conv_state",
    "get_recurrent_state",
    "has_previous_state",
    "is_recording_past",
    "activate_past_recording",
    "early_initialization",
    "offload",
    "prefetch",
):
    setattr(ShadowCache, _name, _on_base(_name))
for _name in ("batch_size", "is_croppable", "is_dummy", "is_linear", "is_sliding"):
    setattr(ShadowCache, _name, _on_base(_name, as_property=True))


class DetachedShadowModel(PreTrainedModel, GenerationMixin):
    """A shadow network alone: ``head(projection(backbone(x)))`` (``ShadowModel.unload_shadow()``).

    A causal LM head gives a ``CausalLMOutputWithPast`` and ``generate`` works (with the backbone's cache); a
    classification head pools the last non-padding token and gives a ``SequenceClassifierOutput``. A backbone that
    shares the base model's input embeddings reaches them through ``input_embeddings``, which is not a submodule (not
    saved): save a model made with ``unload_shadow(copy=True)``.
    """

    main_input_name = "input_ids"
    base_model_prefix = "backbone"
    _supports_cache_class = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flash_attn_2 = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # arguments generate gives causal LMs that a bare backbone does not take
    _causal_lm_only_kwargs = ("logits_to_keep", "num_logits_to_keep")

    def __init__(
        self,
        backbone: PreTrainedModel,
        projection: nn.Module | None = None,
        head: nn.Module | None = None,
        is_classification: bool = False,
        input_embeddings: nn.Module | None = None,
    ) -> None:
        super().__init__(backbone.config)
        self.backbone = backbone
        self.shadow_hidden_projection = projection if projection is not None else nn.Identity()
        self.head = head
        self.is_classification = is_classification
        self._shared_input_embeddings = [input_embeddings]  # a list: not registered as a submodule
        generation_config = getattr(backbone, "generation_config", None)
        self.generation_config = generation_config or GenerationConfig.from_model_config(self.config)

    def can_generate(self) -> bool:
        # PreTrainedModel.__init__ asks before the attributes exist
        return getattr(self, "head", None) is not None and not getattr(self, "is_classification", False)

    def get_input_embeddings(self) -> nn.Module:
        shared = self._shared_input_embeddings[0]
        return shared if shared is not None else self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        if self._shared_input_embeddings[0] is not None:
            self._shared_input_embeddings[0] = value
        else:
            self.backbone.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Module | None:
        return None if self.is_classification else self.head

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> Any:
        for name in self._causal_lm_only_kwargs:
            kwargs.pop(name, None)
        kwargs["return_dict"] = True
        if self._shared_input_embeddings[0] is not None and kwargs.get("inputs_embeds") is None:
            if input_ids is None:
                raise ValueError("Either input_ids or inputs_embeds must be given.")
            kwargs["inputs_embeds"] = self.get_input_embeddings()(input_ids)
            input_ids = None
        output = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        hidden = self.shadow_hidden_projection(output.last_hidden_state)
        if self.head is None:
            return hidden
        if self.is_classification:
            logits = self.head(pool_last_token(hidden, attention_mask))
            loss = sequence_classification_loss(logits, labels) if labels is not None else None
            return SequenceClassifierOutput(loss=loss, logits=logits)
        logits = self.head(hidden)
        loss = shifted_cross_entropy(logits, labels) if labels is not None else None
        return CausalLMOutputWithPast(
            loss=loss, logits=logits, past_key_values=getattr(output, "past_key_values", None)
        )


def load_shadow_backbone(name_or_path: str) -> tuple[nn.Module, nn.Linear | None]:
    """``(backbone, projection)`` from a pretrained model: any ``AutoModel`` (no projection), or a projected shadow
    checkpoint (``model_type == "causal_lm_with_hidden_projection"``: a small backbone under ``shadow_model.*`` and its
    trained projection to the base width, ``shadow_hidden_projection.weight``).

    Raises:
        ValueError: if a projected checkpoint has no projection.
    """
    with open(cached_file(name_or_path, "config.json"), encoding="utf-8") as file:
        raw_config = json.load(file)
    if raw_config.get("model_type") != _PROJECTED_MODEL_TYPE:
        return AutoModel.from_pretrained(name_or_path), None
    from safetensors.torch import load_file

    inner = dict(raw_config["shadow_model_config"])
    backbone = AutoModel.from_config(AutoConfig.for_model(inner.pop("model_type"), **inner))
    weights = load_file(cached_file(name_or_path, "model.safetensors"))
    prefix = "shadow_model."
    backbone.load_state_dict({k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}, strict=True)
    projection_weight = weights.get("shadow_hidden_projection.weight")
    if projection_weight is None:
        raise ValueError(
            f"{name_or_path!r} is a projected shadow checkpoint but holds no 'shadow_hidden_projection.weight'."
        )
    out_features, in_features = projection_weight.shape
    projection = nn.Linear(in_features, out_features, bias=False)
    with torch.no_grad():
        projection.weight.copy_(projection_weight)
    return backbone, projection
