"""``AutoPeftModel*``: load a base model and its adapter from the adapter's folder alone.

The adapter config names the base model (``base_model_name_or_path``) and the task; the matching transformers
``AutoModelFor*`` class builds it, the embedding is resized if the adapter folder ships a larger tokenizer (never
shrunk), and ``PeftModel.from_pretrained`` loads the adapter.
"""

from __future__ import annotations

import os
from typing import Any

from peft.config import PeftConfig
from peft.peft_model import PeftModel
from peft.utils.files import split_hub_kwargs

from .task_models import TASK_MODELS

_AUTO_CLASS_FOR_TASK = {
    "CAUSAL_LM": "AutoModelForCausalLM",
    "SEQ_2_SEQ_LM": "AutoModelForSeq2SeqLM",
    "SEQ_CLS": "AutoModelForSequenceClassification",
    "TOKEN_CLS": "AutoModelForTokenClassification",
    "QUESTION_ANS": "AutoModelForQuestionAnswering",
    "FEATURE_EXTRACTION": "AutoModel",
}


class _BaseAutoPeftModel:
    """Shared ``from_pretrained`` of the ``AutoPeftModel*`` classes."""

    task_type: str | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise OSError(
            f"{type(self).__name__} is designed to be instantiated with `{type(self).__name__}.from_pretrained`."
        )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        adapter_name: str = "default",
        is_trainable: bool = False,
        config: PeftConfig | None = None,
        revision: str | None = None,
        import_allowlist: list[str] | None = None,
        **kwargs: Any,
    ) -> PeftModel:
        """Build the base model named in the adapter config and load the adapter onto it.

        Args:
            import_allowlist: the packages a base model class named by the config's ``auto_mapping`` may be imported
                from (default: ``peft.auto.get_default_import_allowlist()``).

        Raises:
            ValueError: if the adapter's task type does not fit this class, no base model is named, or the config's
                ``auto_mapping`` names a module outside ``import_allowlist``.
        """
        import transformers

        hub_kwargs, model_kwargs = split_hub_kwargs(kwargs)
        peft_config = config or PeftConfig.from_pretrained(
            pretrained_model_name_or_path, revision=revision, **hub_kwargs
        )
        task_type = str(peft_config.task_type) if peft_config.task_type else None
        if cls.task_type is not None and task_type is not None and task_type != cls.task_type:
            raise ValueError(
                f"The adapter's task type is {task_type!r}, but {cls.__name__} loads {cls.task_type!r} adapters; use "
                f"AutoPeftModel or the class for {task_type!r}."
            )
        base_name = peft_config.base_model_name_or_path
        if not base_name:
            raise ValueError("The adapter config names no base model (base_model_name_or_path is empty).")
        auto_name = _AUTO_CLASS_FOR_TASK.get(cls.task_type or task_type or "", None)
        if auto_name:
            auto_cls = getattr(transformers, auto_name)
        else:
            auto_cls = _auto_class_from_mapping(peft_config, import_allowlist)
        base = auto_cls.from_pretrained(base_name, revision=peft_config.revision, **hub_kwargs, **model_kwargs)
        _resize_embeddings_for_tokenizer(base, pretrained_model_name_or_path, hub_kwargs)
        peft_cls = TASK_MODELS.get(task_type or "", PeftModel)
        return peft_cls.from_pretrained(
            base,
            pretrained_model_name_or_path,
            adapter_name=adapter_name,
            is_trainable=is_trainable,
            config=peft_config,
            **hub_kwargs,
        )


def _auto_class_from_mapping(peft_config: PeftConfig, import_allowlist: list[str] | None) -> Any:
    """The base model class recorded in ``auto_mapping`` (non-transformers-task models), else ``AutoModel``."""
    import importlib

    import transformers

    from peft.auto import check_import_allowlist, get_default_import_allowlist

    mapping = peft_config.auto_mapping or {}
    if mapping.get("base_model_class") and mapping.get("parent_library"):
        parent = mapping["parent_library"]
        allowlist = get_default_import_allowlist() if import_allowlist is None else import_allowlist
        if not check_import_allowlist(allowlist, parent):
            raise ValueError(
                f"The adapter config's auto_mapping wants to import {parent!r}, which is not in the import allowlist "
                f"{allowlist}. If importing it is safe, pass `import_allowlist=[{parent!r}]` to `from_pretrained()`."
            )
        module = importlib.import_module(parent)
        return getattr(module, mapping["base_model_class"])
    return transformers.AutoModel


def _resize_embeddings_for_tokenizer(base: Any, adapter_path: str | os.PathLike, hub_kwargs: dict) -> None:
    """Grow the input embedding to the adapter folder's tokenizer vocabulary; never shrink it (spare rows)."""
    path = os.fspath(adapter_path)
    if not os.path.isdir(path) or not any(
        os.path.isfile(os.path.join(path, name)) for name in ("tokenizer_config.json", "tokenizer.json")
    ):
        return
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **hub_kwargs)
    except (OSError, ValueError):
        return  # no usable tokenizer: nothing to resize
    embedding = base.get_input_embeddings()
    if embedding is not None and len(tokenizer) > embedding.weight.shape[0]:
        base.resize_token_embeddings(len(tokenizer))


def _auto_class(name: str, task_type: str | None) -> type:
    return type(
        name, (_BaseAutoPeftModel,), {"task_type": task_type, "__doc__": f"Loads {task_type or 'any'} adapters."}
    )


AutoPeftModel = _auto_class("AutoPeftModel", None)
AutoPeftModelForCausalLM = _auto_class("AutoPeftModelForCausalLM", "CAUSAL_LM")
AutoPeftModelForSeq2SeqLM = _auto_class("AutoPeftModelForSeq2SeqLM", "SEQ_2_SEQ_LM")
AutoPeftModelForSequenceClassification = _auto_class("AutoPeftModelForSequenceClassification", "SEQ_CLS")
AutoPeftModelForTokenClassification = _auto_class("AutoPeftModelForTokenClassification", "TOKEN_CLS")
AutoPeftModelForQuestionAnswering = _auto_class("AutoPeftModelForQuestionAnswering", "QUESTION_ANS")
AutoPeftModelForFeatureExtraction = _auto_class("AutoPeftModelForFeatureExtraction", "FEATURE_EXTRACTION")

AUTO_CLASSES = [
    AutoPeftModel,
    AutoPeftModelForCausalLM,
    AutoPeftModelForSeq2SeqLM,
    AutoPeftModelForSequenceClassification,
    AutoPeftModelForTokenClassification,
    AutoPeftModelForQuestionAnswering,
    AutoPeftModelForFeatureExtraction,
]
