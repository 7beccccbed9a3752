"""Poly layers: ``y = base(x) + (1 / r) x A(t) B(t)`` with the low-rank factors mixed per input row by its task ``t``.

Each layer holds ``n_skills`` skills ``A_k: in -> r`` and ``B_k: r -> out``. With ``n_splits = h`` (Multi-Head
Routing) the input features are cut into ``h`` blocks of ``in / h`` and the output features into ``h`` blocks of
``out / h``; block ``q`` of every factor is mixed by its own weights ``w[t, q, k]``:

    A(t)[q] = sum_k w[t, q, k] A[q, k]        (in / h, r)
    B(t)[q] = sum_k w[t, q, k] B[q, k]        (r, out / h)

and ``A(t)`` stacks its blocks along the input features, ``B(t)`` along the output features. The weights come from
the router: a learned ``(n_tasks, h * n_skills)`` table of logits, squashed per skill (a relaxed Bernoulli sample in
training, the sigmoid in eval) and normalised over the skills of each block.

The tasks of a forward pass are set for all layers at once by :func:`task_ids_of_rows` (the tuner does it for
``model(..., task_ids=...)`` and ``generate``). Stored per adapter (the reference checkpoint format): ``poly_lora_A``
``(h, n_skills, in / h, r)``, ``poly_lora_B`` ``(h, n_skills, r, out / h)`` and ``poly_router.module_logits``.

A new router starts in the train/eval mode of the layer it adapts (the reference's starts in training mode, so an
adapter added to an eval model samples its routing until ``eval()`` is called again).
"""

from __future__ import annotations

import contextvars
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.distributions.relaxed_bernoulli import RelaxedBernoulli

from peft.tuners.tuners_layer import BASE_ADAPTER_NAME, BaseTunerLayer, MixedBatch

# keeps the skill weights of a row finite when every skill's score is 0
_EPS = 1e-12
_row_tasks: contextvars.ContextVar[tuple[torch.Tensor, bool] | None] = contextvars.ContextVar(
    "peft_poly_task_ids", default=None
)


@contextmanager
def task_ids_of_rows(task_ids: Any, expanded_rows: bool = False) -> Iterator[None]:
    """Within the block, Poly layers route row ``i`` of their input to task ``task_ids[i]`` (a context variable,
    so nothing is registered on modules and nothing leaks if the forward raises).

    ``expanded_rows``: inputs may hold ``k`` consecutive rows per task id (``generate`` repeats each input row for
    beams and returned sequences, and encoder-decoder models run their encoder on the rows before the repetition).
    """
    token = _row_tasks.set(None if task_ids is None else (torch.as_tensor(task_ids).reshape(-1), expanded_rows))
    try:
        yield
    finally:
        _row_tasks.reset(token)


def _task_ids_for(rows: int) -> torch.Tensor:
    """The task of each of ``rows`` input rows."""
    current = _row_tasks.get()
    if current is None:
        raise ValueError(
            "Poly adapters route each input row by its task: pass task_ids (one task index per row), e.g. "
            "model(**inputs, task_ids=torch.tensor([0, 1]))."
        )
    task_ids, expanded_rows = current
    if rows == task_ids.numel():
        return task_ids
    if expanded_rows and task_ids.numel() and rows % task_ids.numel() == 0:
        return task_ids.repeat_interleave(rows // task_ids.numel())
    raise ValueError(f"task_ids has {task_ids.numel()} entries but the input has {rows} rows; give one task per row.")


class PolyRouter(nn.Module):
    """The learned task-to-skill table ``module_logits`` ``(n_tasks, n_splits * n_skills)``; returns the skill
    weights ``(rows, n_splits, n_skills)`` of the given tasks, each block's summing to 1."""

    def __init__(self, n_tasks: int, n_skills: int, n_splits: int, **factory: Any) -> None:
        super().__init__()
        self.n_tasks, self.n_skills, self.n_splits = n_tasks, n_skills, n_splits
        self.module_logits = nn.Parameter(torch.empty(n_tasks, n_splits * n_skills, **factory))

    def reset(self) -> None:
        """Near-uniform routing: logits drawn from ``U(-1e-3, 1e-3)``."""
        with torch.no_grad():
            self.module_logits.uniform_(-1e-3, 1e-3)

    def forward(self, task_ids: torch.Tensor) -> torch.Tensor:
        task_ids = torch.as_tensor(task_ids, device=self.module_logits.device).long().reshape(-1)
        if task_ids.numel() and (task_ids.min() < 0 or task_ids.max() >= self.n_tasks):
            raise ValueError(
                f"task_ids must lie in [0, {self.n_tasks - 1}] (n_tasks={self.n_tasks}), got {task_ids.tolist()}."
            )
        logits = self.module_logits[task_ids].view(-1, self.n_splits, self.n_skills)
        if self.training:
            scores = RelaxedBernoulli(temperature=1.0, logits=logits).rsample()
        else:
            scores = torch.sigmoid(logits)
        return scores / (scores.sum(dim=-1, keepdim=True) + _EPS)


def _kaiming_uniform_blocks(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    """Uniform values with torch's default ``nn.Linear`` bound for ``fan_in`` (Kaiming, ``a = sqrt(5)``)."""
    bound = nn.init.calculate_gain("leaky_relu", math.sqrt(5)) * math.sqrt(3.0 / fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


class PolyLayer(BaseTunerLayer):
    """Poly on a linear layer (``nn.Linear``, transformers' ``Conv1D``, or a quantized linear layer)."""

    adapter_layer_names = ("poly_lora_A", "poly_lora_B", "poly_router")
    other_param_names = ("r", "n_tasks", "n_skills", "n_splits", "poly_type")

    repr_prefix = "poly"

    def _init_adapter_state(self) -> None:
        if None in (self.in_features, self.out_features):
            raise TypeError(
                f"Poly supports linear layers (torch.nn.Linear, transformers Conv1D, quantized linear layers), got "
                f"{type(self.get_base_layer()).__name__}."
            )
        self.poly_router = nn.ModuleDict()
        super()._init_adapter_state()

    def update_layer(
        self,
        adapter_name: str,
        r: int = 8,
        n_tasks: int = 1,
        n_skills: int = 4,
        n_splits: int = 1,
        poly_type: str = "poly",
        init_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        """Create (or replace) adapter ``adapter_name`` (arguments as in ``PolyConfig``).

        Raises:
            ValueError: if ``n_splits`` does not divide the layer's in and out features, or ``r`` is not positive.
        """
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        if self.in_features % n_splits or self.out_features % n_splits:
            raise ValueError(
                f"n_splits={n_splits} must divide the layer's in_features ({self.in_features}) and out_features "
                f"({self.out_features})."
            )
        self.r[adapter_name] = r
        self.n_tasks[adapter_name] = n_tasks
        self.n_skills[adapter_name] = n_skills
        self.n_splits[adapter_name] = n_splits
        self.poly_type[adapter_name] = poly_type
        # drawn on the CPU in float32 in the reference's order (A, then B, then the router), then placed
        block_in, block_out = self.in_features // n_splits, self.out_features // n_splits
        factory = self._factory_kwargs()
        # one (r, in / h) Linear-like weight per (skill, split), stored transposed
        weight_a = _kaiming_uniform_blocks((n_skills, n_splits, r, block_in), block_in).permute(1, 0, 3, 2)
        if init_weights:
            weight_b = torch.zeros(n_splits, n_skills, r, block_out)
        else:
            weight_b = _kaiming_uniform_blocks((n_skills, n_splits, block_out, r), r).permute(1, 0, 3, 2)
        router = PolyRouter(n_tasks, n_skills, n_splits)
        router.reset()
        router.train(self.get_base_layer().training)  # routes like the model: sampled only while training
        self.poly_lora_A[adapter_name] = nn.Parameter(weight_a.contiguous().to(**factory))
        self.poly_lora_B[adapter_name] = nn.Parameter(weight_b.contiguous().to(**factory))
        self.poly_router[adapter_name] = router.to(**factory)

    # ---------------------------------------------------------------------------------------------- forward
    def _poly_update(self, x: torch.Tensor, adapter_name: str, task_ids: torch.Tensor) -> torch.Tensor:
        """``(1 / r) x A(t) B(t)`` for every row of ``x`` (rows first, features last)."""
        weights = self.poly_router[adapter_name](task_ids)  # (rows, h, n_skills)
        factor_a, factor_b = self.poly_lora_A[adapter_name], self.poly_lora_B[adapter_name]
        rows, r = x.shape[0], self.r[adapter_name]
        weights = weights.to(factor_a.dtype)
        mixed_a = torch.einsum("bqs,qsdr->bqdr", weights, factor_a).reshape(rows, self.in_features, r)
        mixed_b = torch.einsum("bqs,qsrd->brqd", weights, factor_b).reshape(rows, r, self.out_features)
        flat = self._cast_input_dtype(x, factor_a.dtype).reshape(rows, -1, self.in_features)
        update = flat.bmm(mixed_a).bmm(mixed_b) / r
        return update.reshape(*x.shape[:-1], self.out_features)

    def _adapter_update(self, x: torch.Tensor, adapter_name: str) -> torch.Tensor:
        return self._poly_update(x, adapter_name, _task_ids_for(x.shape[0]))

    def _mixed_batch_forward(
        self, x: torch.Tensor, *args: Any, adapter_names: Sequence[str], **kwargs: Any
    ) -> torch.Tensor:
        """Each adapter's rows with their own tasks."""
        self._check_mixed_batch_state(adapter_names, x)
        task_ids = _task_ids_for(x.shape[0])
        result = self.base_layer(x, *args, **kwargs)
        result = result if self._owns_base_output() else result.clone()
        batch = adapter_names if isinstance(adapter_names, MixedBatch) else MixedBatch(adapter_names)
        for name, index in batch.groups(x.device).items():
            if name == BASE_ADAPTER_NAME or not self._has_adapter(name):
                continue
            rows_task_ids = task_ids.to(index.device).index_select(0, index)
            update = self._poly_update(x.index_select(0, index), name, rows_task_ids)
            result.index_add_(0, index, update.to(result.dtype))
        return result

    def _check_merge_allowed(self, adapter_names: list[str]) -> None:
        raise ValueError(
            f"Poly adapters {adapter_names} cannot be merged: their update depends on the task of each input row "
            "(task_ids), not on the layer alone."
        )


class Linear(PolyLayer, nn.Module):
    """Poly on a linear layer."""
