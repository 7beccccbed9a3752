"""``PolyModel``: injects Poly layers; ``forward`` and ``generate`` take the rows' ``task_ids``.

Why a model file with more than registration: the tasks of a call reach every layer through a context variable set
here (``task_ids_of_rows``), instead of a forward hook on each layer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.quantization import resolve_quantization_backend
from peft.tuners._targeting import is_transformers_conv1d
from peft.tuners.poly.config import PolyConfig
from peft.tuners.poly.layer import Linear, PolyLayer, task_ids_of_rows
from peft.tuners.tuners_layer import BaseTunerLayer
from peft.tuners.tuners_utils import BaseTuner

_SUPPORTED = "torch.nn.Linear, transformers.pytorch_utils.Conv1D, quantized linear layers"


class PolyModel(BaseTuner):
    """Creates Poly / MHR adapters on a model (see ``PolyConfig``).

    Example:
        >>> from peft import PolyConfig, get_peft_model
        >>> model = get_peft_model(base_model, PolyConfig(task_type="SEQ_2_SEQ_LM", n_tasks=3, n_skills=2))
        >>> out = model(**inputs, task_ids=torch.tensor([0, 2]))
        >>> tokens = model.generate(**inputs, task_ids=torch.tensor([0, 2]))
    """

    prefix: str = "poly_"
    tuner_layer_cls = PolyLayer
    layers_mapping = {nn.Linear: Linear}

    def _layer_kwargs(self, config: PolyConfig, current_key: str) -> dict[str, Any]:
        names = ("r", "n_tasks", "n_skills", "n_splits", "poly_type", "init_weights")
        return {name: getattr(config, name) for name in names}

    @classmethod
    def _create_new_module(
        cls, peft_config: PolyConfig, adapter_name: str, target: nn.Module, **kwargs: Any
    ) -> BaseTunerLayer:
        """A Poly layer around ``target``: a linear layer of any storage (custom modules first)."""
        base = target.get_base_layer() if isinstance(target, BaseTunerLayer) else target
        for base_cls, layer_cls in (getattr(peft_config, "_custom_modules", None) or {}).items():
            if isinstance(base, base_cls):
                return layer_cls(target, adapter_name, **kwargs)
        if isinstance(base, nn.Linear) or is_transformers_conv1d(base) or resolve_quantization_backend(base):
            return Linear(target, adapter_name, **kwargs)
        raise TypeError(
            f"Target module {type(base).__name__} is not supported by PolyModel; supported modules: {_SUPPORTED}."
            " Register a custom layer with config._register_custom_module({ModuleType: LayerClass}) for others."
        )

    def forward(self, *args: Any, task_ids: Any = None, **kwargs: Any) -> Any:
        """The model's forward with row ``i`` routed to task ``task_ids[i]``."""
        with task_ids_of_rows(task_ids):
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, task_ids: Any = None, **kwargs: Any) -> Any:
        """The model's ``generate`` with input row ``i`` routed to task ``task_ids[i]``, also its beams and returned
        sequences (the reference fails with ``num_beams`` or ``num_return_sequences`` above 1)."""
        with task_ids_of_rows(task_ids, expanded_rows=True):
            return self.model.generate(*args, **kwargs)
