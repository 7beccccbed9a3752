"""``PolyModel``: injects Poly layers; ``forward`` and ``generate`` take the rows' ``task_ids``.

Why a model file with more than registration: the tasks of a call reach every layer through a context variable set
here (``task_ids_of_rows``), instead of a forward hook on each layer.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from peft.tuners._targeting import TransformersConv1D
from peft.tuners.poly.layer import Linear, PolyLayer, task_ids_of_rows
from peft.tuners.tuners_utils import BaseTuner


class PolyModel(BaseTuner):
    """Creates Poly / MHR adapters on a model (see ``PolyConfig``).

    Example:
        >>> from peft import PolyConfig, get_peft_model
        >>> model = get_peft_model(base_model, PolyConfig(task_type="SEQ_2_SEQ_LM", n_tasks=3, n_skills=2))
        >>> out = model(**inputs, task_ids=torch.tensor([0, 2]))
        >>> tokens = model.generate(**inputs, task_ids=torch.tensor([0, 2]))
    """

    tuner_layer_cls = PolyLayer
    layers_mapping = {nn.Linear: Linear, TransformersConv1D: Linear}
    layer_options = ("r", "n_tasks", "n_skills", "n_splits", "poly_type", "init_weights")

    def forward(self, *args: Any, task_ids: Any = None, **kwargs: Any) -> Any:
        """The model's forward with row ``i`` routed to task ``task_ids[i]``."""
        with task_ids_of_rows(task_ids):
            return self.model(*args, **kwargs)

    def generate(self, *args: Any, task_ids: Any = None, **kwargs: Any) -> Any:
        """The model's ``generate`` with input row ``i`` routed to task ``task_ids[i]``, also its beams and returned
        sequences (the reference fails with ``num_beams`` or ``num_return_sequences`` above 1)."""
        with task_ids_of_rows(task_ids, expanded_rows=True):
            return self.model.generate(*args, **kwargs)
