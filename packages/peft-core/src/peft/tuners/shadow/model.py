"""``ShadowModel``: wraps the decoder blocks, owns the shadow networks and threads the shadow state through a
forward.

Why a model file with more than registration: the shadow backbone, its projection to the base width and (for
classification) its head belong to the model, one per adapter (``shadow_backbone``, ``shadow_projection``,
``shadow_head``); and four hooks make the shadow state ride the base model's decoder loop: on the model, one seeds
``s0`` from the raw inputs (and splits a :class:`ShadowCache` into the base model's cache and the backbone's), one
packs both caches into a ``ShadowCache`` on the way out; on the first adapted block, one wraps its input into a
:class:`~peft.tuners.shadow.layer.ShadowCarrier`; on the last, one unwraps its output. A model whose top-level
inputs are not tokens (a diffusion transformer) seeds ``s0`` from the first adapted block's input instead, with a
small token-wise MLP as backbone (``peft.tuners.shadow.backbone`` builds the backbones).

What needs transformers (the ``ShadowCache``, the standalone model of ``unload_shadow``, loading a pretrained
backbone) is provided by the transformers host package (method components of ``peft.hosts``).

Checkpoints follow the reference layout, which always names the adapter ``default`` inside its keys:
``<block>.shadow_down.default.weight`` and ``base_model.shadow_backbone.default.<backbone key>`` (likewise
``shadow_projection`` and ``shadow_head``), whatever the adapter's name.

Deliberate differences from peft 0.21.2: ``layers_to_transform`` selects the wrapped blocks (the reference ignores it
and wraps every matched block); a new adapter's shadow networks and dropout start in the model's train/eval mode (the
reference's start in training mode, so an adapter added to an eval model runs with dropout); mixed-batch inference
(``adapter_names``) is refused with an error; the Flux2-specific diffusion backend is not implemented (diffusion
transformers get the generic token-wise backbone).
"""

from __future__ import annotations

import contextlib
import copy
import inspect
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from peft.config import PeftConfig
from peft.state_dict import load_module_tensors
from peft.tuners.shadow.backbone import (
    build_mirror_backbone,
    decoder_layers,
    find_backbone,
    hidden_size_of,
    is_diffusion_transformer,
)
from peft.tuners.shadow.config import ShadowConfig
from peft.tuners.shadow.layer import ShadowCarrier, ShadowLayer, refuse_merge
from peft.tuners.tuners_utils import BaseTuner, TargetModule
from peft.utils.torch_internals import keep_unregistered
from peft.utils.warnings import warn

_MODEL_CONTAINERS = ("shadow_backbone", "shadow_projection", "shadow_head")
_LAYER_CONTAINERS = ShadowLayer.adapter_layer_names
# the adapter name the reference writes into every checkpoint key
_FILE_ADAPTER = "default"


def _host_component(name: str, required: bool = True) -> Any:
    """A part of ShadowPEFT that needs transformers, from the transformers host package (None if absent and not
    ``required``)."""
    from peft.hosts import get_host_registry

    loader = get_host_registry().method_components.get(("SHADOW", name))
    if loader is None:
        if not required:
            return None
        raise ImportError(f"ShadowPEFT's {name} needs the transformers host package: pip install peft-transformers.")
    return loader()


# ---------------------------------------------------------------------------------------------- losses
def pool_last_token(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The hidden state of each row's last non-padding token (left or right padding)."""
    if attention_mask is None:
        return hidden[:, -1]
    positions = torch.arange(attention_mask.shape[-1], device=attention_mask.device)
    last = (attention_mask.ne(0) * positions).argmax(dim=-1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last.to(hidden.device)]


def sequence_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """As transformers' sequence classification: MSE for one label, cross-entropy for integer labels, else binary
    cross-entropy (multi-label)."""
    num_labels = logits.shape[-1]
    if num_labels == 1:
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype).view(-1))
    if labels.dtype in (torch.long, torch.int):
        return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels)


def shifted_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy (``-100`` labels ignored)."""
    shifted = logits[..., :-1, :].contiguous()
    return F.cross_entropy(
        shifted.view(-1, shifted.shape[-1]), labels[..., 1:].contiguous().view(-1), ignore_index=-100
    )


class ShadowModel(BaseTuner):
    """Creates ShadowPEFT adapters on a model (see ``ShadowConfig``). One adapter is active at a time.

    Example:
        >>> model = get_peft_model(base_model, ShadowConfig(task_type="CAUSAL_LM"))
        >>> loss = model(input_ids=ids, labels=ids).loss  # includes the shadow network's own weighted loss
        >>> small = model.base_model.unload_shadow()  # the shadow network alone, a causal LM
    """

    tuner_layer_cls = ShadowLayer
    layers_mapping = {nn.Module: ShadowLayer}  # any decoder block
    layer_options = ("r", "shadow_alpha", "shadow_dropout", "init_weights", "update_hidden_size")
    # the backbones live on the tuner: injecting into a bare model (transformers' add_adapter) cannot keep them
    uses_shared_state = True

    # ------------------------------------------------------------------------------------------ setup
    def _ensure_shadow_state(self) -> None:
        if "shadow_backbone" in self._modules:
            return
        for name in _MODEL_CONTAINERS:
            setattr(self, name, nn.ModuleDict())
        # plain attributes: the hooked blocks already belong to self.model (registering them again would duplicate
        # their parameters)
        keep_unregistered(
            self,
            _hook_handles=[],
            _boundary_layers=[],
            _seed_shadow_state=None,
            _shadow_past_out=None,
            _should_pack_shadow_cache=False,
            _deferred_shadow_seed=False,
            _shadow_share_embeddings={},
            _shadow_head_is_lm={},
            last_shadow_loss=None,
        )

    def _prepare_adapter_config(self, peft_config: ShadowConfig, model_config: dict[str, Any]) -> ShadowConfig:
        """Without ``target_modules``: every block of the decoder stack (contiguous, as the shadow state needs)."""
        if peft_config.target_modules is None:
            backbone = find_backbone(self.model)
            layers, attr = decoder_layers(backbone)
            path = next(name for name, module in self.model.named_modules() if module is backbone)
            stack = f"{path}.{attr}" if path else attr
            peft_config.target_modules = {f"{stack}.{i}" for i in range(len(layers))}
        return peft_config

    def _select_targets(
        self, model: nn.Module, peft_config: ShadowConfig, state_dict: dict[str, torch.Tensor] | None
    ) -> list[str]:
        """The targeted blocks, restricted to ``layers_to_transform``: a block's index is the last part of its name
        (``model.layers.3``), after ``layers_pattern`` when given. (The reference ignores ``layers_to_transform`` for
        ShadowPEFT and wraps every matched block.)

        Raises:
            ValueError: if no targeted block has one of the indices.
        """
        layers = peft_config.layers_to_transform
        if layers is None:
            return super()._select_targets(model, peft_config, state_dict)
        unrestricted = copy.copy(peft_config)
        unrestricted.layers_to_transform = unrestricted.layers_pattern = None
        blocks = super()._select_targets(model, unrestricted, state_dict)
        wanted = {layers} if isinstance(layers, int) else set(layers)
        patterns = (
            [peft_config.layers_pattern] if isinstance(peft_config.layers_pattern, str) else peft_config.layers_pattern
        )
        selected = []
        for key in blocks:
            parent, _, index = key.rpartition(".")
            if index.isdigit() and int(index) in wanted and (not patterns or parent.rpartition(".")[2] in patterns):
                selected.append(key)
        if not selected:
            raise ValueError(
                f"No targeted block has an index in layers_to_transform={sorted(wanted)} (layers_pattern="
                f"{peft_config.layers_pattern!r}); targeted blocks: {blocks[:10]}."
            )
        return selected

    def _check_new_adapter_config(self, config: ShadowConfig) -> None:
        super()._check_new_adapter_config(config)
        if len(self.peft_config) > 1 and any(str(c.task_type) == "SEQ_CLS" for c in self.peft_config.values()):
            raise ValueError(
                "ShadowPEFT does not support multiple adapters when any adapter uses sequence classification: each "
                "such adapter needs the classifier in modules_to_save and its own shadow_head."
            )

    def inject_adapter(self, model: nn.Module, adapter_name: str, *args: Any, **kwargs: Any) -> None:
        """The adapter's shadow networks, then its blocks (the reference's order, so a seed gives the same initial
        values), then the hooks for the blocks now adapted."""
        self._ensure_shadow_state()
        try:
            if adapter_name not in self.shadow_backbone:
                self._init_shadow_backbone(adapter_name, self.peft_config[adapter_name])
            super().inject_adapter(model, adapter_name, *args, **kwargs)
        except Exception:
            self._drop_shadow_modules(adapter_name)
            raise
        self._register_boundary_hooks()

    def _base_hidden_size(self) -> int:
        return hidden_size_of(self.model.config)

    def _layer_kwargs(self, target: TargetModule) -> dict[str, Any]:
        return {"hidden_size": self._base_hidden_size(), **super()._layer_kwargs(target)}

    # ------------------------------------------------------------------------------------------ shadow networks
    def _init_shadow_backbone(self, adapter_name: str, config: ShadowConfig) -> None:
        """Build (or load) the backbone, its projection to the base width and the head of ``adapter_name``."""
        loaded_projection = None
        if config.shadow_model == "mirror":
            backbone = build_mirror_backbone(self.model, config)
        elif is_diffusion_transformer(self.model):
            raise ValueError(
                "Pretrained shadow_model checkpoints are not supported for diffusion transformers here; use "
                'shadow_model="mirror".'
            )
        else:
            backbone, loaded_projection = _host_component("load_shadow_backbone")(config.shadow_model)
        base_hidden, shadow_hidden = self._base_hidden_size(), hidden_size_of(backbone.config)
        if loaded_projection is not None:
            if (loaded_projection.in_features, loaded_projection.out_features) != (shadow_hidden, base_hidden):
                raise ValueError(
                    f"The pretrained shadow projection maps {loaded_projection.in_features} -> "
                    f"{loaded_projection.out_features} features, but the shadow and base hidden sizes are "
                    f"{shadow_hidden} and {base_hidden}."
                )
            projection = loaded_projection
        elif shadow_hidden != base_hidden:
            projection = nn.Linear(shadow_hidden, base_hidden, bias=False)
        else:
            projection = nn.Identity()
        try:
            takes_embeds = "inputs_embeds" in inspect.signature(backbone.forward).parameters
        except (TypeError, ValueError):
            takes_embeds = False
        share = (
            config.share_embeddings
            and config.shadow_model == "mirror"
            and not is_diffusion_transformer(self.model)
            and takes_embeds
            and shadow_hidden == base_hidden
        )
        if share and isinstance(getattr(backbone, "embed_tokens", None), nn.Module):
            del backbone.embed_tokens  # driven by the base model's input embeddings
        head, head_is_lm = self._build_shadow_head(config)
        reference = next((p for p in self.model.parameters() if p.device.type != "meta"), None)
        for module in (backbone, projection, head):
            if module is not None:
                module.train(self.model.training)  # in the model's mode: an eval model gets no dropout
                if reference is not None:
                    module.to(device=reference.device, dtype=reference.dtype)
        self.shadow_backbone[adapter_name] = backbone
        self.shadow_projection[adapter_name] = projection
        if head is not None:
            self.shadow_head[adapter_name] = head
        self._shadow_share_embeddings[adapter_name] = share
        self._shadow_head_is_lm[adapter_name] = head_is_lm

    def _build_shadow_head(self, config: ShadowConfig) -> tuple[nn.Module | None, bool]:
        """``(head, is_lm_head)``: causal LMs reuse the base model's output head (trained through
        ``modules_to_save=["lm_head"]`` if wanted); classifiers get a trainable copy of the base classifier."""
        task = str(config.task_type)
        if task == "CAUSAL_LM":
            return None, True
        if task == "SEQ_CLS":
            for name in ("score", "classifier"):
                head = getattr(self.model, name, None)
                if isinstance(head, nn.Module):
                    return copy.deepcopy(head), False
        return None, False

    def _drop_shadow_modules(self, adapter_name: str) -> None:
        if "shadow_backbone" not in self._modules:
            return
        for name in _MODEL_CONTAINERS:
            if adapter_name in self._modules[name]:
                del self._modules[name][adapter_name]
        self._shadow_share_embeddings.pop(adapter_name, None)
        self._shadow_head_is_lm.pop(adapter_name, None)

    def _resolve_shadow_head(self, adapter_name: str) -> nn.Module | None:
        """The adapter's own head, or the base model's output head for causal LMs."""
        if adapter_name in self.shadow_head:
            return self.shadow_head[adapter_name]
        if self._shadow_head_is_lm.get(adapter_name, False):
            return self.model.get_output_embeddings()
        return None

    # ------------------------------------------------------------------------------------------ hooks
    def _register_boundary_hooks(self) -> None:
        """(Re)attach the hooks to the model and to the first and last adapted blocks."""
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles.clear()
        wrapped = [module for module in self.model.modules() if isinstance(module, ShadowLayer)]
        keep_unregistered(self, _boundary_layers=[wrapped[0], wrapped[-1]] if wrapped else [])
        if not wrapped:
            return
        self._hook_handles.extend(
            [
                self.model.register_forward_pre_hook(self._seed_shadow_pre_hook, with_kwargs=True),
                self.model.register_forward_hook(self._pack_shadow_cache_hook, with_kwargs=True),
                wrapped[0].register_forward_pre_hook(self._wrap_entry_pre_hook, with_kwargs=True),
                wrapped[-1].register_forward_hook(self._unwrap_exit_hook, with_kwargs=True),
            ]
        )

    def _remove_boundary_hooks(self) -> None:
        for handle in getattr(self, "_hook_handles", []):
            handle.remove()
        if "_hook_handles" in self.__dict__:
            self._hook_handles.clear()
            keep_unregistered(self, _boundary_layers=[])

    def _shadow_path_active(self) -> bool:
        if not self._boundary_layers:
            return False
        entry = self._boundary_layers[0]
        active = self.active_adapters
        return not entry.disable_adapters and bool(active) and active[0] in entry.shadow_down

    def _seed_shadow_pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """Compute ``s0`` from the model's raw inputs, and give the base model only its own part of a
        ``ShadowCache``."""
        keep_unregistered(
            self,
            _seed_shadow_state=None,
            _shadow_past_out=None,
            _should_pack_shadow_cache=False,
            _deferred_shadow_seed=False,
        )
        past = kwargs.get("past_key_values")
        shadow_past = None
        cache_cls = _host_component("ShadowCache", required=False) if past is not None else None
        if cache_cls is not None and isinstance(past, cache_cls):  # the base model continues only its own cache
            kwargs = {**kwargs, "past_key_values": past.base}
            shadow_past = past.shadow
        if not self._shadow_path_active():
            return args, kwargs
        use_cache = kwargs.get("use_cache")
        if use_cache is None:
            use_cache = bool(getattr(getattr(self.model, "config", None), "use_cache", False))
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        inputs_embeds = kwargs.get("inputs_embeds")
        if not isinstance(input_ids, torch.Tensor) and inputs_embeds is None:
            main_input = kwargs.get(getattr(self.model, "main_input_name", None) or "")
            if isinstance(main_input, torch.Tensor) and self.model.main_input_name != "input_ids":
                inputs_embeds = main_input
        if not isinstance(input_ids, torch.Tensor) and inputs_embeds is None:
            # latents rather than tokens (diffusion transformers): seed from the first adapted block's input
            self._deferred_shadow_seed = True
            return args, kwargs
        seed, shadow_past_out = self._compute_initial_shadow_state(
            self.active_adapters[0],
            input_ids=input_ids if isinstance(input_ids, torch.Tensor) else None,
            attention_mask=kwargs.get("attention_mask"),
            position_ids=kwargs.get("position_ids"),
            inputs_embeds=inputs_embeds,
            past_key_values=shadow_past,
            use_cache=use_cache,
        )
        keep_unregistered(
            self, _seed_shadow_state=seed, _shadow_past_out=shadow_past_out, _should_pack_shadow_cache=bool(use_cache)
        )
        return args, kwargs

    def _pack_shadow_cache_hook(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        """Return both caches as one ``ShadowCache``, so the next decoding step advances both paths."""
        if not self._should_pack_shadow_cache:
            return output
        self._should_pack_shadow_cache = False
        shadow_past, self._shadow_past_out = self._shadow_past_out, None
        if hasattr(output, "past_key_values"):
            output.past_key_values = _host_component("ShadowCache")(base=output.past_key_values, shadow=shadow_past)
        return output

    def _wrap_entry_pre_hook(self, module: ShadowLayer, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        """The first adapted block gets ``(hidden states, s0)`` as a carrier."""
        hidden = args[0] if args else kwargs.get("hidden_states")
        if not isinstance(hidden, torch.Tensor):
            return None
        if self._deferred_shadow_seed:
            # seeded here on every call (gradient checkpointing runs the block again and needs the backbone again)
            seed, _ = self._compute_initial_shadow_state(
                self.active_adapters[0], None, None, None, inputs_embeds=hidden, past_key_values=None, use_cache=False
            )
            self._seed_shadow_state = seed
        seed = self._seed_shadow_state
        if seed is None:
            return None
        if hidden.shape[:-1] != seed.shape[:-1]:
            raise ValueError(
                f"The shadow state covers {tuple(seed.shape[:-1])} positions but the hidden states "
                f"{tuple(hidden.shape[:-1])}. With a key/value cache, pass the ShadowCache the model returned as "
                "past_key_values, so that the base model and the shadow backbone see the same new tokens."
            )
        carrier = ShadowCarrier(hidden, seed)
        if args:
            return (carrier, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": carrier}

    def _unwrap_exit_hook(self, module: ShadowLayer, args: tuple, kwargs: dict, output: Any) -> Any:
        """The last adapted block hands plain hidden states to the rest of the model."""
        if isinstance(output, tuple) and output and isinstance(output[0], ShadowCarrier):
            return (output[0].hidden, *output[1:])
        return output.hidden if isinstance(output, ShadowCarrier) else output

    def _compute_initial_shadow_state(
        self,
        adapter_name: str,
        input_ids: torch.Tensor | None,
        attention_mask: Any,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        past_key_values: Any = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, Any]:
        """``s0 = projection(backbone(inputs))`` and the backbone's cache."""
        backbone = self.shadow_backbone[adapter_name]
        kwargs: dict[str, Any] = {
            "attention_mask": attention_mask,
            "use_cache": use_cache,
            "return_dict": True,
            "past_key_values": past_key_values,
        }
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        share = self._shadow_share_embeddings.get(adapter_name, False)
        if share and inputs_embeds is None:
            inputs_embeds = self.model.get_input_embeddings()(input_ids)
        if inputs_embeds is not None:
            output = backbone(inputs_embeds=inputs_embeds, **kwargs)
        else:
            output = backbone(input_ids=input_ids, **kwargs)
        if not hasattr(output, "last_hidden_state"):
            raise TypeError("The shadow backbone returned no last_hidden_state; its architecture is not supported.")
        state = self.shadow_projection[adapter_name](output.last_hidden_state)
        return state, getattr(output, "past_key_values", None)

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The model's forward; with labels (and a loss), the shadow network's own loss on ``s0`` times
        ``auxiliary_loss_weight`` is added to ``loss`` and reported (detached) as ``shadow_loss``."""
        labels = kwargs.get("labels")
        output = self.model(*args, **kwargs)
        self.last_shadow_loss = None
        if labels is None or getattr(output, "loss", None) is None or not self._shadow_path_active():
            return output
        shadow_loss = self.shadow_auxiliary_loss(labels, attention_mask=kwargs.get("attention_mask"))
        if shadow_loss is not None:
            self.last_shadow_loss = shadow_loss.detach()
            output.shadow_loss = self.last_shadow_loss
            weight = self.peft_config[self.active_adapters[0]].auxiliary_loss_weight
            if weight > 0:
                output.loss = output.loss + weight * shadow_loss
        return output

    def shadow_auxiliary_loss(self, labels: torch.Tensor, attention_mask: Any = None) -> torch.Tensor | None:
        """The shadow network's task loss on the last forward's ``s0`` (unweighted): next-token cross-entropy of
        ``head(s0)`` for causal LMs, the classification loss of the last token's ``head(s0)`` for classifiers. It
        trains exactly what ``unload_shadow()`` returns. None without a head or a shadow state."""
        adapter_name = self.active_adapters[0]
        state, head = self._seed_shadow_state, self._resolve_shadow_head(adapter_name)
        if state is None or head is None:
            return None
        if self._shadow_head_is_lm.get(adapter_name, False):
            return shifted_cross_entropy(head(state), labels)
        return sequence_classification_loss(head(pool_last_token(state, attention_mask)), labels)

    # ------------------------------------------------------------------------------------------ lifecycle
    def _sync_shadow_trainability(self, inference_mode: bool = False) -> None:
        """The active adapter's backbone, projection and head train (unless ``inference_mode``); the others are
        frozen, and so are a pretrained backbone's embeddings."""
        for name in _MODEL_CONTAINERS:
            for adapter_name, module in self._modules[name].items():
                module.requires_grad_(adapter_name in self.active_adapters and not inference_mode)
        self._freeze_pretrained_embeddings()

    def _freeze_pretrained_embeddings(self) -> None:
        """A pretrained backbone's (large) embedding tables never train: that would not be parameter-efficient."""
        for adapter_name, backbone in self.shadow_backbone.items():
            if self.peft_config[adapter_name].shadow_model == "mirror":
                continue
            for getter in ("get_input_embeddings", "get_output_embeddings"):
                with contextlib.suppress(AttributeError, NotImplementedError):
                    embeddings = getattr(backbone, getter)()
                    if isinstance(embeddings, nn.Module):
                        embeddings.requires_grad_(False)

    def _finish_injection(
        self, model: nn.Module, peft_config: ShadowConfig, adapter_name: str, autocast_adapter_dtype: bool
    ) -> None:
        super()._finish_injection(model, peft_config, adapter_name, autocast_adapter_dtype)
        active = self.active_adapters[0] if self.active_adapters else None
        self._sync_shadow_trainability(inference_mode=self.peft_config[active].inference_mode if active else True)

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate one adapter (its blocks and shadow networks); it trains unless ``inference_mode``.

        Raises:
            ValueError: for several adapters: the shadow state has one trajectory.
        """
        names = [adapter_name] if isinstance(adapter_name, str) else list(adapter_name)
        if len(names) != 1:
            raise ValueError(f"ShadowPEFT requires exactly one active adapter, but got {len(names)} adapters.")
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._sync_shadow_trainability(inference_mode=inference_mode)

    def set_requires_grad(self, adapter_names: str | list[str], requires_grad: bool = True) -> None:
        """Train (or freeze) adapters, their shadow networks included."""
        super().set_requires_grad(adapter_names, requires_grad)
        for name in [adapter_names] if isinstance(adapter_names, str) else adapter_names:
            for container in _MODEL_CONTAINERS:
                if name in self._modules[container]:
                    self._modules[container][name].requires_grad_(requires_grad)
        self._freeze_pretrained_embeddings()

    def delete_adapter(self, adapter_name: str) -> None:
        """Remove an adapter, its shadow networks included."""
        super().delete_adapter(adapter_name)
        self._drop_shadow_modules(adapter_name)
        self._register_boundary_hooks()

    def merge_adapter(self, adapter_names: list[str] | None = None, safe_merge: bool = False) -> None:
        refuse_merge()

    def _unload_and_optionally_merge(self, merge: bool = True, *args: Any, **kwargs: Any) -> nn.Module:
        if merge:
            refuse_merge()  # before anything is changed
        self._remove_boundary_hooks()
        return super()._unload_and_optionally_merge(merge, *args, **kwargs)

    def unload_shadow(self, adapter_name: str | None = None, copy: bool = False) -> nn.Module:
        """The shadow network of ``adapter_name`` (default: the active one) as a standalone model,
        ``head(projection(backbone(x)))``: a causal LM (with ``generate``) or a classifier of the last token.

        Args:
            adapter_name: whose shadow network to return.
            copy: deep-copy its modules; else they are shared with this model (and a backbone that shares the base
                model's input embeddings reaches them without owning them, so save a ``copy=True`` result).

        Raises:
            ValueError: if the adapter has no shadow network.
            NotImplementedError: for diffusion transformers (a standalone denoiser needs more than the backbone).
        """
        adapter_name = adapter_name or self.active_adapters[0]
        if adapter_name not in self.shadow_backbone:
            raise ValueError(f"No shadow backbone found for adapter {adapter_name!r}.")
        if is_diffusion_transformer(self.model):
            raise NotImplementedError(
                "unload_shadow() is not supported for Diffusers models: a standalone denoiser needs the "
                "architecture's own blocks, not only the shadow backbone."
            )
        take = copy_module if copy else (lambda module: module)
        backbone = take(self.shadow_backbone[adapter_name])
        projection = take(self.shadow_projection[adapter_name])
        head = self._resolve_shadow_head(adapter_name)
        head = take(head) if head is not None else None
        shared_embeddings = None
        if self._shadow_share_embeddings.get(adapter_name, False):
            embeddings = self.model.get_input_embeddings()
            if copy:
                backbone.embed_tokens = copy_module(embeddings)
            else:
                shared_embeddings = embeddings
        return _host_component("DetachedShadowModel")(
            backbone,
            projection,
            head,
            is_classification=str(self.peft_config[adapter_name].task_type) == "SEQ_CLS",
            input_embeddings=shared_embeddings,
        )

    # ------------------------------------------------------------------------------------------ checkpoints
    @classmethod
    def _adapter_state_dict_to_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The reference layout: ``default`` after every container name, and the shadow networks under the tuner
        (``base_model.shadow_backbone.default.*``)."""
        out = {}
        for key, tensor in state_dict.items():
            for container in _LAYER_CONTAINERS:
                marker = f".{container}."
                if marker in key or key.startswith(container + "."):
                    head, _, tail = key.partition(f"{container}.")
                    key = f"{head}{container}.{_FILE_ADAPTER}.{tail}"
                    break
            out[key] = tensor
        prefix, tuner = cls._find_tuner(model)
        for container in _MODEL_CONTAINERS:
            modules = tuner._modules[container]
            if adapter_name in modules:
                for key, tensor in modules[adapter_name].state_dict().items():
                    out[f"{prefix}{container}.{_FILE_ADAPTER}.{key}"] = tensor
        return out

    @classmethod
    def _adapter_state_dict_from_file(
        cls, model: nn.Module, config: PeftConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Load the shadow networks; block keys lose the ``default`` segment for the generic loading.

        Raises:
            ValueError: if a shadow network's tensor does not fit (naming the key and both shapes).
        """
        prefix, tuner = cls._find_tuner(model)
        for container in _MODEL_CONTAINERS:
            marker = f"{prefix}{container}.{_FILE_ADAPTER}."
            tensors = {k[len(marker) :]: state_dict.pop(k) for k in [k for k in state_dict if k.startswith(marker)]}
            modules = tuner._modules[container]
            if adapter_name not in modules:
                if tensors:
                    raise ValueError(f"The checkpoint holds {container} tensors but the adapter has no {container}.")
                continue
            hint = "Check the shadow_* fields of the adapter's config."
            missing = load_module_tensors(modules[adapter_name], tensors, marker, hint)
            if missing:
                warn(f"The checkpoint lacks {missing[:10]}; they keep their initial values.")
        out = {}
        for key, tensor in state_dict.items():
            for container in _LAYER_CONTAINERS:
                marker = f"{container}.{_FILE_ADAPTER}."
                if marker in key:
                    key = key.replace(marker, f"{container}.", 1)
                    break
            out[key] = tensor
        return out


def copy_module(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` (for ``unload_shadow(copy=True)``)."""
    return copy.deepcopy(module)
