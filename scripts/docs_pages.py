"""MkDocs hook: the method pages of the documentation site, generated from the registry.

For every method registered in ``peft`` (``PEFT_TYPE_TO_CONFIG_MAPPING``) it writes ``methods/<name>.md``: the
method's paper, what it supports (measured by :mod:`peft.capabilities`), its config fields with their defaults and
descriptions (from the config dataclass and its docstring), a runnable example and the API reference of its config
and tuner classes; and ``methods/index.md``, the table of all methods. The pages are generated at build time and
never stored, so they follow the code. The only hand-kept data is :data:`METHODS`: each method's display name and
paper, in one place.

``tests/test_docs.py`` runs every generated example and checks that every registered method has an entry here.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import textwrap
from typing import Any

#: peft_type -> (display name, paper title, paper URL); URL None where no paper is known (the page says so).
METHODS: dict[str, tuple[str, str, str | None]] = {
    "ADAMSS": ("AdaMSS", "no paper link recorded", None),
    "BEFT": ("BEFT", "paper: arXiv 2509.15974", "https://arxiv.org/abs/2509.15974"),
    "CARTRIDGE": (
        "Cartridges",
        "Cartridges: Lightweight and general-purpose long context representations via self-study",
        "https://arxiv.org/abs/2506.06266",
    ),
    "DEFT": ("DEFT", "no paper link recorded", None),
    "FROD": ("FRoD", "paper: AAAI 2026, doi 10.1609/aaai.v40i31.39813", "https://doi.org/10.1609/aaai.v40i31.39813"),
    "OSF": (
        "OSF (orthogonal subspace fine-tuning)",
        "Sculpting Subspaces: Constrained Full Fine-Tuning in LLMs for Continual Learning",
        "https://arxiv.org/abs/2504.07097",
    ),
    "PEANUT": (
        "PEANuT",
        "PEANuT: Parameter-Efficient Adaptation with Weight-aware Neural Tweakers",
        "https://arxiv.org/abs/2410.01870",
    ),
    "PSOFT": ("PSOFT", "paper: OpenReview FSHrinMArK", "https://openreview.net/forum?id=FSHrinMArK"),
    "SHADOW": ("Shadow", "no paper link recorded", None),
    "SUPERTUNING": ("Super-Tuning", "paper: arXiv 2607.09287", "https://arxiv.org/abs/2607.09287"),
    "ADALORA": (
        "AdaLoRA",
        "Adaptive Budget Allocation for Parameter-Efficient Fine-Tuning",
        "https://openreview.net/forum?id=lq62uWRJjiY",
    ),
    "ADAPTION_PROMPT": (
        "Adaption prompt (LLaMA-Adapter)",
        "LLaMA-Adapter: Efficient Fine-tuning of Language Models with Zero-init Attention",
        "https://arxiv.org/abs/2303.16199",
    ),
    "BOFT": (
        "BOFT",
        "Parameter-Efficient Orthogonal Finetuning via Butterfly Factorization",
        "https://arxiv.org/abs/2311.06243",
    ),
    "BONE": (
        "Bone",
        "Bone: Block-Affine Adaptation of Large Language Models (superseded by MiSS)",
        "https://arxiv.org/abs/2409.15371",
    ),
    "C3A": (
        "C3A",
        "Parameter-Efficient Fine-Tuning via Circular Convolution",
        "https://arxiv.org/abs/2407.19342",
    ),
    "CPT": (
        "CPT (context-aware prompt tuning)",
        "Context-aware Prompt Tuning: Advancing In-Context Learning with Adversarial Methods",
        "https://arxiv.org/abs/2410.17222",
    ),
    "DELORA": (
        "DeLoRA",
        "Decoupling Angles and Strength in Low-rank Adaptation",
        "https://arxiv.org/abs/2503.18225",
    ),
    "FOURIERFT": (
        "FourierFT",
        "Parameter-Efficient Fine-Tuning with Discrete Fourier Transform",
        "https://arxiv.org/abs/2405.03003",
    ),
    "GLORA": (
        "GLoRA",
        "One-for-All: Generalized LoRA for Parameter-Efficient Fine-tuning",
        "https://arxiv.org/abs/2306.07967",
    ),
    "GRALORA": (
        "GraLoRA",
        "GraLoRA: Granular Low-Rank Adaptation for Parameter-Efficient Fine-Tuning",
        "https://arxiv.org/abs/2505.20355",
    ),
    "HIRA": (
        "HiRA",
        "HiRA: Parameter-Efficient Hadamard High-Rank Adaptation for Large Language Models",
        "https://openreview.net/forum?id=TwJrTz9cRS",
    ),
    "HRA": (
        "HRA",
        "Bridging The Gap between Low-rank and Orthogonal Adaptation via Householder Reflection Adaptation",
        "https://arxiv.org/abs/2405.17484",
    ),
    "IA3": (
        "(IA)³",
        "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning",
        "https://arxiv.org/abs/2205.05638",
    ),
    "LILY": (
        "Lily",
        "Low-Rank Interconnected Adaptation across Layers",
        "https://arxiv.org/abs/2407.09946",
    ),
    "LN_TUNING": (
        "LayerNorm tuning",
        "Tuning LayerNorm in Attention: Towards Efficient Multi-Modal LLM Finetuning",
        "https://arxiv.org/abs/2312.11420",
    ),
    "LOHA": (
        "LoHa",
        "FedPara: Low-Rank Hadamard Product for Communication-Efficient Federated Learning",
        "https://arxiv.org/abs/2108.06098",
    ),
    "LOKR": (
        "LoKr",
        "Navigating Text-To-Image Customization: From LyCORIS Fine-Tuning to Model Evaluation",
        "https://arxiv.org/abs/2309.14859",
    ),
    "LORA": (
        "LoRA",
        "LoRA: Low-Rank Adaptation of Large Language Models",
        "https://arxiv.org/abs/2106.09685",
    ),
    "MISS": (
        "MiSS",
        "MiSS: Balancing LoRA Performance and Efficiency with Simple Shard Sharing",
        "https://arxiv.org/abs/2409.15371",
    ),
    "MULTITASK_PROMPT_TUNING": (
        "Multitask prompt tuning",
        "Multitask Prompt Tuning Enables Parameter-Efficient Transfer Learning",
        "https://arxiv.org/abs/2303.02861",
    ),
    "OFT": (
        "OFT",
        "Controlling Text-to-Image Diffusion by Orthogonal Finetuning",
        "https://arxiv.org/abs/2306.07280",
    ),
    "P_TUNING": (
        "P-tuning",
        "GPT Understands, Too",
        "https://arxiv.org/abs/2103.10385",
    ),
    "POLY": (
        "Poly",
        "Combining Parameter-efficient Modules for Task-level Generalisation",
        "https://arxiv.org/abs/2202.13914",
    ),
    "PREFIX_TUNING": (
        "Prefix tuning",
        "Prefix-Tuning: Optimizing Continuous Prompts for Generation",
        "https://arxiv.org/abs/2101.00190",
    ),
    "PROMPT_TUNING": (
        "Prompt tuning",
        "The Power of Scale for Parameter-Efficient Prompt Tuning",
        "https://arxiv.org/abs/2104.08691",
    ),
    "PVERA": (
        "PVeRA",
        "PVeRA: Probabilistic Vector-based Random Matrix Adaptation",
        "https://arxiv.org/abs/2512.07703",
    ),
    "RANDLORA": (
        "RandLoRA",
        "RandLoRA: Full-rank parameter-efficient fine-tuning of large models",
        "https://arxiv.org/abs/2502.00987",
    ),
    "ROAD": (
        "RoAd",
        "RoAd: 2D Rotary Adaptation for Efficient Batched Inference",
        "https://arxiv.org/abs/2409.00119",
    ),
    "SHIRA": (
        "SHiRA",
        "Sparse High Rank Adapters",
        "https://arxiv.org/abs/2406.13175",
    ),
    "TINYLORA": (
        "TinyLoRA",
        "TinyLoRA: Learning to Reason in 13 Parameters",
        "https://arxiv.org/abs/2602.04118",
    ),
    "TRAINABLE_TOKENS": ("Trainable tokens", "no paper: trains the embedding rows of selected tokens only", None),
    "UNILORA": (
        "UniLoRA",
        "UniLoRA: One Vector is All You Need",
        "https://arxiv.org/abs/2506.00799",
    ),
    "VBLORA": (
        "VB-LoRA",
        "VB-LoRA: Extreme Parameter Efficient Fine-Tuning with Vector Banks",
        "https://arxiv.org/abs/2405.15179",
    ),
    "VERA": (
        "VeRA",
        "VeRA: Vector-based Random Matrix Adaptation",
        "https://arxiv.org/abs/2310.11454",
    ),
    "WAVEFT": (
        "WaveFT",
        "Exploring Sparsity for Parameter Efficient Fine Tuning Using Wavelets",
        "https://arxiv.org/abs/2505.12532",
    ),
    "XLORA": (
        "X-LoRA",
        "X-LoRA: Mixture of Low-Rank Adapter Experts",
        "https://arxiv.org/abs/2402.07148",
    ),
}

#: Fields every config has (documented once, on PeftConfig's reference page), left out of the method pages' tables.
_COMMON_FIELDS = {
    "peft_type",
    "task_type",
    "inference_mode",
    "base_model_name_or_path",
    "revision",
    "auto_mapping",
    "peft_version",
}

#: Settings of the prompt-learning examples (which run on a tiny Llama), by peft_type.
_PROMPT_EXAMPLE_OPTIONS: dict[str, dict[str, Any]] = {
    "ADAPTION_PROMPT": {"adapter_len": 4, "adapter_layers": 1},
    "MULTITASK_PROMPT_TUNING": {"num_tasks": 2},
}


def page_name(peft_type: str) -> str:
    """The file name of a method's page: ``methods/lora.md``."""
    return f"methods/{peft_type.lower()}.md"


def display_name(peft_type: str) -> str:
    return METHODS[peft_type][0] if peft_type in METHODS else peft_type


@functools.cache
def capabilities() -> tuple[Any, ...]:
    from peft.capabilities import all_method_capabilities

    return tuple(all_method_capabilities())


# ------------------------------------------------------------------------------------------------ config fields
def _docstring_args(cls: type) -> dict[str, str]:
    """``name -> description`` from the ``Args:`` (or ``Attributes:``) section of ``cls``'s docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    match = re.search(r"^(?:Args|Attributes):\n(.*?)(?:\n\S|\Z)", doc, flags=re.S | re.M)
    if not match:
        return {}
    entries: list[tuple[list[str], str]] = []
    for line in match.group(1).splitlines():
        # "name: text", "name (type): text", or "first / second: text" for two fields described together
        item = re.match(r"^ {4}(\w+(?: / \w+)*)(?: \(.*?\))?: ?(.*)$", line)
        if item:
            entries.append((item.group(1).split(" / "), item.group(2)))
        elif entries and line.strip():
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
    return {name: text for names, text in entries for name in names}


def _default_of(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return "required"
    text = repr(value)
    if hasattr(value, "value") and isinstance(getattr(value, "value", None), str):  # enum members
        text = repr(value.value)
    return text if len(text) <= 40 else text[:37] + "..."


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_fields_table(config_cls: type) -> str:
    """A Markdown table of the config's own fields: name, default, description."""
    described = {}
    for cls in reversed(config_cls.__mro__):
        described.update(_docstring_args(cls))
    rows = ["| field | default | description |", "|---|---|---|"]
    for field in dataclasses.fields(config_cls):
        if field.name in _COMMON_FIELDS or not field.init:
            continue
        description = described.get(field.name) or field.metadata.get("help", "")
        rows.append(f"| `{field.name}` | `{_cell(_default_of(field))}` | {_cell(description)} |")
    return "\n".join(rows)


# ------------------------------------------------------------------------------------------------ examples
def example_code(capability: Any) -> str:
    """A runnable example for one method: build, train a step, save, reload, and merge where the method can."""
    from peft.capabilities import EXAMPLE_OPTIONS

    peft_type, config_class = capability.peft_type, capability.config_class
    if capability.kind in ("prompt learning", "adaption prompt"):
        return _prompt_learning_example(peft_type, config_class)
    if capability.kind == "model-level":
        if peft_type not in _MODEL_LEVEL_EXAMPLES:
            raise KeyError(f"{peft_type} is a model-level method: add its example to _MODEL_LEVEL_EXAMPLES.")
        return _TINY_LLAMA + textwrap.dedent(_MODEL_LEVEL_EXAMPLES[peft_type])
    options = dict(EXAMPLE_OPTIONS.get(peft_type, {}))
    if "Linear" in capability.layer_types and peft_type != "TRAINABLE_TOKENS":
        model = "nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))"
        targets, inputs = ["0", "2"], "torch.randn(8, 64)"
        if peft_type == "LN_TUNING":
            model = "nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64), nn.Linear(64, 64))"
            targets = ["1"]
    else:  # an embedding method
        model = "nn.Sequential(nn.Embedding(100, 64), nn.Linear(64, 64))"
        targets, inputs = ["0"], "torch.randint(0, 100, (8, 5))"
    arguments = ", ".join([f"target_modules={targets!r}"] + [f"{key}={value!r}" for key, value in options.items()])
    call = "model(x, task_ids=tasks)" if peft_type == "POLY" else "model(x)"
    # (the line after it keeps the template's indentation, so that dedent still applies)
    tasks = "tasks = torch.zeros(8, dtype=torch.long)  # Poly routes each row by its task\n        "
    tasks = tasks if peft_type == "POLY" else ""
    merge_supported = ("Embedding" if inputs.startswith("torch.randint") else "Linear") in capability.merge
    merge = (
        textwrap.dedent(
            """
            # fold the adapter into the base weights: a plain torch model that computes the same
            merged = loaded.merge_and_unload()
            assert torch.allclose(merged(x), expected, atol=1e-4)
            """
        )
        if merge_supported
        else "\n# this method has no merge: keep the adapter as a separate module\n"
    )
    return (
        textwrap.dedent(
            f"""\
        import tempfile

        import torch
        from torch import nn

        from peft import PeftModel, {config_class}, get_peft_model


        def make_base():
            torch.manual_seed(0)  # the same base weights each time
            return {model}


        config = {config_class}({arguments})
        model = get_peft_model(make_base(), config)
        model.print_trainable_parameters()

        # one training step: only the adapter's parameters train
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        x = {inputs}
        {tasks}loss = {call}.float().pow(2).mean()
        loss.backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            expected = {call}
        with tempfile.TemporaryDirectory() as adapter_dir:
            model.save_pretrained(adapter_dir)  # adapter_config.json + adapter_model.safetensors
            loaded = PeftModel.from_pretrained(make_base(), adapter_dir)
            loaded.eval()  # dropout and sampling off, as for `model` above
        with torch.no_grad():
            assert torch.allclose(loaded{call[len("model") :]}, expected, atol=1e-5)
        """
        )
        + merge
    )


_TINY_LLAMA = textwrap.dedent(
    """\
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    import peft


    def make_base():  # a tiny Llama built in code; use AutoModelForCausalLM.from_pretrained(...) in practice
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(
            vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2,
        ))


    input_ids = torch.randint(0, 64, (2, 6))
    """
)

#: Examples of the methods no one-layer model can take, appended to _TINY_LLAMA (they run as tests too).
_MODEL_LEVEL_EXAMPLES = {
    "SHADOW": """
        # a small shadow network runs beside the decoder blocks and corrects their hidden states
        model = peft.get_peft_model(make_base(), peft.ShadowConfig(task_type="CAUSAL_LM"))
        model.print_trainable_parameters()
        model(input_ids=input_ids, labels=input_ids).loss.backward()

        model.eval()
        with torch.no_grad():
            expected = model(input_ids=input_ids).logits
        with tempfile.TemporaryDirectory() as adapter_dir:
            model.save_pretrained(adapter_dir)
            loaded = peft.PeftModel.from_pretrained(make_base(), adapter_dir).eval()
            with torch.no_grad():
                assert torch.allclose(loaded(input_ids=input_ids).logits, expected, atol=1e-5)
        """,
    "XLORA": """
        # X-LoRA mixes LoRA experts trained before, with a classifier that picks their scalings per token
        with tempfile.TemporaryDirectory() as experts_dir:
            experts = {}
            for i in range(2):
                expert = peft.get_peft_model(
                    make_base(), peft.LoraConfig(task_type="CAUSAL_LM", target_modules=["q_proj", "v_proj"])
                )
                expert.save_pretrained(f"{experts_dir}/expert_{i}")
                experts[str(i)] = f"{experts_dir}/expert_{i}"
            config = peft.XLoraConfig(task_type="CAUSAL_LM", hidden_size=32, adapters=experts)
            base = make_base()
            base.config.use_cache = False  # X-LoRA's scaling pass sees every token: no key/value cache
            model = peft.get_peft_model(base, config)
            model.print_trainable_parameters()  # the classifier trains; the experts are frozen
            model(input_ids=input_ids, labels=input_ids).loss.backward()
            model.eval()
            with torch.no_grad():
                logits = model(input_ids=input_ids).logits
            assert logits.shape == (2, 6, 64)
        """,
}


def _prompt_learning_example(peft_type: str, config_class: str) -> str:
    options = {"task_type": "CAUSAL_LM", **_PROMPT_EXAMPLE_OPTIONS.get(peft_type, {})}
    if peft_type not in ("CPT", "ADAPTION_PROMPT"):
        options["num_virtual_tokens"] = 4
    arguments = ", ".join(f"{key}={value!r}" for key, value in options.items())
    task_ids = ", task_ids=torch.tensor([0, 1])" if peft_type == "MULTITASK_PROMPT_TUNING" else ""
    return textwrap.dedent(
        f"""\
        import tempfile

        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        from peft import PeftModel, {config_class}, get_peft_model


        def make_base():  # a tiny Llama built in code; use AutoModelForCausalLM.from_pretrained(...) in practice
            torch.manual_seed(0)
            return LlamaForCausalLM(LlamaConfig(
                vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2,
            ))


        config = {config_class}({arguments})
        model = get_peft_model(make_base(), config)
        model.print_trainable_parameters()  # only the virtual tokens' parameters train

        input_ids = torch.randint(0, 64, (2, 6))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model(input_ids=input_ids, labels=input_ids{task_ids}).loss.backward()
        optimizer.step()

        model.eval()
        with torch.no_grad():
            expected = model(input_ids=input_ids{task_ids}).logits
        with tempfile.TemporaryDirectory() as adapter_dir:
            model.save_pretrained(adapter_dir)
            loaded = PeftModel.from_pretrained(make_base(), adapter_dir)
            loaded.eval()  # dropout and sampling off, as for `model` above
        with torch.no_grad():
            assert torch.allclose(loaded(input_ids=input_ids{task_ids}).logits, expected, atol=1e-5)
        """
    )


# ------------------------------------------------------------------------------------------------ pages
def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _subset(selected: tuple[str, ...], of: tuple[str, ...]) -> str:
    if not of:
        return "–"
    if selected == of:
        return "yes"
    return ", ".join(selected) if selected else "no"


def _paper_link(peft_type: str) -> str:
    _, title, url = METHODS.get(peft_type, (peft_type, "", None))
    return f"[{title}]({url})" if url else title


def method_table() -> str:
    rows = [
        "| method | type | layer types | merge | mixed batch | quantized base | `PeftMixedModel` | paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in capabilities():
        layers = (
            ", ".join(c.layer_types)
            if c.layer_types
            else ("– (whole model)" if c.kind == "model-level" else "– (prompts)")
        )
        quantized = _yes(c.quantized_base) if c.layer_types else "any (no layer is changed)"
        if c.kind == "model-level":
            quantized = "not measured"
        rows.append(
            f"| [{display_name(c.peft_type)}]({c.peft_type.lower()}.md) | {c.kind} | {layers} | "
            f"{_subset(c.merge, c.layer_types)} | {_subset(c.mixed_batch, c.layer_types)} | {quantized} | "
            f"{_yes(c.mixed_adapter_types)} | {_paper_link(c.peft_type)} |"
        )
    return "\n".join(rows)


def index_page() -> str:
    return (
        textwrap.dedent(
            """\
            # Methods

            Every method registered in `peft`, with what it supports. This page and the method pages are generated
            when the site is built: the methods come from the registry (`PEFT_TYPE_TO_CONFIG_MAPPING`) and each
            column is measured by `peft.capabilities`, which applies the method to a one-layer model of each base
            layer type and checks the results:

            - **layer types**: the base layers the method adapts (`transformers Conv1D` is GPT-2's linear layer).
            - **merge**: merging into the base weight gives the unmerged outputs, and unmerging restores the base
              (`yes`: on every layer type it adapts; otherwise the layer types where it does).
            - **mixed batch**: `model(x, adapter_names=[...])` gives each row the output of its own adapter (or of
              the base model for `"__base__"`).
            - **quantized base**: the method adapts a linear layer whose weight is stored quantized, reading it
              through the quantization-backend interface (see [Quantization](../quantization.md)).
            - **`PeftMixedModel`**: the method can be combined with adapters of other methods in one model.

            `peft methods` prints the same table in a terminal, `peft methods --json` as JSON.

            """
        )
        + method_table()
        + "\n"
    )


_REFERENCE_OPTIONS = "    options:\n      show_root_heading: true\n      heading_level: 3\n"


def method_page(capability: Any) -> str:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING

    c = capability
    config_cls = PEFT_TYPE_TO_CONFIG_MAPPING[c.peft_type]
    reference = [config_cls]
    if c.peft_type in PEFT_TYPE_TO_TUNER_MAPPING:
        reference.append(PEFT_TYPE_TO_TUNER_MAPPING[c.peft_type])
    name = display_name(c.peft_type)
    if c.kind == "prompt learning":
        support = (
            "A prompt-learning method: it adds trainable virtual tokens in front of the input and changes no layer "
            "of the model, so it works with any base model of a supported task type, quantized or not. It has no "
            "merge and no mixed batch."
        )
    elif c.kind == "model-level":
        support = (
            "A model-level method: it wraps a transformer's blocks or routes between adapters loaded before, so no "
            "one-layer model can take it and `peft.capabilities` measures nothing for it. See the example and the "
            "API reference below for what it supports."
        )
    elif c.kind == "adaption prompt":
        support = (
            "Learned prompts inside the attention of the top layers of Llama-like models (provided by the "
            "transformers host). It has no merge and no mixed batch."
        )
    else:
        support = textwrap.dedent(
            f"""\
            | | |
            |---|---|
            | layer types | {", ".join(c.layer_types)} |
            | merge | {_subset(c.merge, c.layer_types)} |
            | mixed batch | {_subset(c.mixed_batch, c.layer_types)} |
            | quantized base | {_yes(c.quantized_base)} |
            | `PeftMixedModel` | {_yes(c.mixed_adapter_types)} |"""
        )
    return (
        f"# {name}\n\n"
        f"`peft_type`: `{c.peft_type}` · config: `{c.config_class}` · paper: {_paper_link(c.peft_type)}\n\n"
        f"{c.summary}\n\n"
        "## What it supports\n\n"
        f"{support}\n\n"
        "Measured on this version by `peft.capabilities` (see the [method table](index.md)).\n\n"
        "## Config fields\n\n"
        "Besides the fields every config has (`task_type`, `inference_mode`, `base_model_name_or_path`, ...; see "
        "[`PeftConfig`][peft.PeftConfig]):\n\n"
        f"{config_fields_table(config_cls)}\n\n"
        "## Example\n\n"
        f"```python\n{example_code(c)}```\n\n"
        "## API reference\n\n"
        + "\n".join(f"::: {cls.__module__}.{cls.__name__}\n{_REFERENCE_OPTIONS}" for cls in reference)
    )


# ------------------------------------------------------------------------------------------------ MkDocs hooks
def on_config(config: Any) -> Any:
    """Put one navigation entry per registered method under "Methods"."""
    entries = [{display_name(c.peft_type): page_name(c.peft_type)} for c in capabilities()]
    for section in config["nav"]:
        if isinstance(section, dict) and "Methods" in section:
            section["Methods"] = ["methods/index.md", *entries]
    return config


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    files.append(File.generated(config, "methods/index.md", content=index_page()))
    for capability in capabilities():
        files.append(File.generated(config, page_name(capability.peft_type), content=method_page(capability)))
    return files
