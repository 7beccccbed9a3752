"""``AdamssAsaCallback``: runs AdaMSS's adaptive subspace allocation from transformers' ``Trainer``."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments


class AdamssAsaCallback(TrainerCallback):
    """Calls ``AdamssModel.update_and_allocate(state.global_step)`` after every optimizer step; all settings come
    from the adapter's ``AdamssConfig`` (``use_asa=True``, ``asa_target_subspaces``, ``init_warmup``, ...).

    Example:
        >>> from peft.tuners.adamss.asa_callback import AdamssAsaCallback
        >>> trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[AdamssAsaCallback()])
    """

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> TrainerControl | None:
        model = kwargs.get("model")
        tuner = getattr(model, "base_model", model)
        if hasattr(tuner, "update_and_allocate"):
            tuner.update_and_allocate(state.global_step)
        return super().on_optimizer_step(args=args, state=state, control=control)
