"""One torchrun process of the distributed tests: trains every requested case under each requested engine, in one
process group, saves each adapter by the documented recipe, and writes what the pytest process compares.

    torchrun --nproc_per_node 2 distributed_worker.py OUTPUT_DIR ENGINE=CASE,CASE,... [ENGINE=CASE,...]

ENGINE: ddp, fsdp1 (``use_orig_params=True``), fsdp1_flat (``use_orig_params=False``), fsdp2, zero2, zero3, zero3_init
(the base model loaded under ``deepspeed.zero.Init``), trainer_zero3 (transformers' Trainer with a ZeRO-3 config,
saving with ``trainer.save_model``; one case only, accelerate allows one DeepSpeed Accelerator per process; no losses
to compare with one process). For each case, OUTPUT_DIR/ENGINE/CASE/ receives the saved adapter and ``result.pt``
(losses averaged over the ranks, eval logits of the trained sharded model) from rank 0, or ``error-rank<N>.txt`` from
each rank that failed. Engine-wide checks (merging refused, merging inside a gather) go to
OUTPUT_DIR/ENGINE/checks.json.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import distributed_cases as cases  # noqa: E402

from peft.utils.other import fsdp_auto_wrap_policy  # noqa: E402

ENGINES = ("ddp", "fsdp1", "fsdp1_flat", "fsdp2", "zero2", "zero3", "zero3_init", "trainer_zero3")


@dataclass
class Run:
    """A model wrapped by an engine: how to step it, and how to save its adapter (called on every rank: the recipes
    of docs/distributed.md)."""

    peft_model: torch.nn.Module
    forward: Callable[..., object]
    backward_and_step: Callable[[torch.Tensor], None]
    save: Callable[[str], None]
    facts: dict = field(default_factory=dict)  # what the test checks about the engine's state


def _sgd(parameters) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in parameters if p.requires_grad], lr=cases.LEARNING_RATE)


def _plain_step(optimizer: torch.optim.Optimizer) -> Callable[[torch.Tensor], None]:
    def backward_and_step(loss: torch.Tensor) -> None:
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    return backward_and_step


def _save_on_rank0(model: torch.nn.Module) -> Callable[[str], None]:
    """Where every rank holds the whole adapter (DDP, ZeRO-2): rank 0 saves, alone."""

    def save(directory: str) -> None:
        if dist.get_rank() == 0:
            model.save_pretrained(directory)

    return save


def ddp(case: str) -> Run:
    from torch.nn.parallel import DistributedDataParallel

    model = cases.peft_model(case)
    wrapped = DistributedDataParallel(model)
    return Run(model, wrapped, _plain_step(_sgd(wrapped.parameters())), _save_on_rank0(model))


def fsdp1(case: str, use_orig_params: bool = True) -> Run:
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    model = cases.peft_model(case)
    wrapped = FSDP(
        model,
        auto_wrap_policy=fsdp_auto_wrap_policy(model),
        use_orig_params=use_orig_params,
        device_id=torch.device("cpu"),
    )

    def save(directory: str) -> None:
        # offload_to_cpu=True fails in torch on a CPU-only run; the tensors are on the CPU anyway
        config = FullStateDictConfig(offload_to_cpu=False, rank0_only=True)
        with FSDP.state_dict_type(wrapped, StateDictType.FULL_STATE_DICT, config):
            state_dict = wrapped.state_dict()
        if dist.get_rank() == 0:  # rank 0 alone: nothing in saving may wait for the other ranks
            model.save_pretrained(directory, state_dict=state_dict)

    return Run(model, wrapped, _plain_step(_sgd(wrapped.parameters())), save)


def fsdp2(case: str) -> Run:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard

    model = cases.peft_model(case)
    for layer in model.get_base_model().model.layers:
        fully_shard(layer)
    fully_shard(model)

    def save(directory: str) -> None:
        state_dict = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if dist.get_rank() == 0:
            model.save_pretrained(directory, state_dict=state_dict)

    return Run(model, model, _plain_step(_sgd(model.parameters())), save)


def deepspeed_config(stage: int) -> dict:
    return {
        "train_micro_batch_size_per_gpu": cases.BATCH // dist.get_world_size(),
        "gradient_accumulation_steps": 1,
        # threshold 0: every parameter is partitioned, however small, as large ones are in real models
        "zero_optimization": {"stage": stage, "stage3_param_persistence_threshold": 0},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,  # DeepSpeed clips at norm 1.0 by default; the single-process run does not clip
        "steps_per_print": 10**9,
    }


def zero(case: str, stage: int, base_dir: str | None = None) -> Run:
    """``base_dir``: load the base model from there under ``deepspeed.zero.Init``, as transformers does with a ZeRO-3
    config, so that it is partitioned from the start."""
    import deepspeed

    config = deepspeed_config(stage)
    if base_dir is not None:
        from transformers import AutoModelForCausalLM
        from transformers.integrations import HfDeepSpeedConfig

        zero3_config = HfDeepSpeedConfig(config)  # noqa: F841  (transformers reads it while it exists)
        base = AutoModelForCausalLM.from_pretrained(base_dir)
        facts = {"base_partitioned_before_injection": all(p.numel() == 0 for p in base.parameters())}
        model = cases.peft_model(case, base)
    else:
        facts = {}
        model = cases.peft_model(case)
    engine, *_ = deepspeed.initialize(model=model, optimizer=_sgd(model.parameters()), config=config)
    if stage == 3:
        facts["adapter_partitioned"] = all(p.numel() == 0 for p in model.parameters() if p.requires_grad)
        facts["base_partitioned"] = all(p.numel() == 0 for p in model.parameters() if not p.requires_grad)

    def backward_and_step(loss: torch.Tensor) -> None:
        engine.backward(loss)
        engine.step()

    def save_gathered(directory: str) -> None:
        # docs/distributed.md: gather the trainable parameters on every rank, save on rank 0 inside
        trainable = [p for p in model.parameters() if p.requires_grad]
        with deepspeed.zero.GatheredParameters(trainable):
            model.save_pretrained(directory, is_main_process=dist.get_rank() == 0)

    def save_consolidated(directory: str) -> None:
        state_dict = engine._zero3_consolidated_16bit_state_dict()  # what accelerate's get_state_dict returns
        if dist.get_rank() == 0:
            model.save_pretrained(directory, state_dict=state_dict)

    save = _save_on_rank0(model) if stage < 3 else save_gathered if base_dir is None else save_consolidated
    return Run(model, engine, backward_and_step, save, facts)


def build(engine: str, case: str, output_dir: str) -> Run:
    return {
        "ddp": lambda: ddp(case),
        "fsdp1": lambda: fsdp1(case, use_orig_params=True),
        "fsdp1_flat": lambda: fsdp1(case, use_orig_params=False),
        "fsdp2": lambda: fsdp2(case),
        "zero2": lambda: zero(case, 2),
        "zero3": lambda: zero(case, 3),
        "zero3_init": lambda: zero(case, 3, base_dir=os.path.join(output_dir, "base")),
    }[engine]()


def run_case(engine: str, case: str, output_dir: str) -> None:
    rank, world_size = dist.get_rank(), dist.get_world_size()
    run = build(engine, case, output_dir)
    run.facts["quantized_layers"] = sum(type(m).__name__ == "Linear4bit" for m in run.peft_model.modules())
    losses = []
    for batch in cases.batches():
        rows = cases.rows_of_rank(batch, rank, world_size)
        loss = run.forward(input_ids=rows, labels=rows).loss
        run.backward_and_step(loss)
        mean = loss.detach().clone()
        dist.all_reduce(mean)
        losses.append(mean.item() / world_size)
    run.peft_model.eval()
    with torch.no_grad():
        logits = run.forward(input_ids=cases.eval_batch()).logits
    case_dir = os.path.join(output_dir, case)
    run.save(case_dir)
    if rank == 0:
        result = {"losses": losses, "logits": logits, "facts": run.facts}
        torch.save(result, os.path.join(case_dir, "result.pt"))
    dist.barrier()


class _Sequences(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(0, 64, (cases.SEQUENCE,), generator=torch.Generator().manual_seed(index))
        return {"input_ids": ids, "labels": ids}


def run_trainer_case(case: str, output_dir: str) -> None:
    """transformers' Trainer with DeepSpeed ZeRO-3 on the CPU; a run on CPU needs accelerate told to use DeepSpeed
    and gloo, and the Trainer told to keep that state (host-side settings, not peft's)."""
    import transformers
    from accelerate import PartialState

    os.environ["ACCELERATE_USE_DEEPSPEED"] = "true"
    PartialState(backend="gloo")
    config = deepspeed_config(3)
    config.update(
        train_micro_batch_size_per_gpu="auto",
        gradient_clipping="auto",
        optimizer={"type": "AdamW", "params": {"lr": "auto", "torch_adam": True}},
    )
    config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    args = transformers.TrainingArguments(
        output_dir=os.path.join(output_dir, "trainer"),
        per_device_train_batch_size=2,
        max_steps=cases.STEPS,
        learning_rate=1e-2,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        deepspeed=config,
        accelerator_config={"use_configured_state": True},
    )
    model = cases.peft_model(case)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_Sequences())
    trainer.train()
    model.eval()
    with torch.no_grad():
        logits = trainer.model_wrapped(input_ids=cases.eval_batch()).logits
    case_dir = os.path.join(output_dir, case)
    trainer.save_model(case_dir)  # every rank: the ZeRO-3 state dict is gathered
    if dist.get_rank() == 0:
        torch.save({"losses": None, "logits": logits, "facts": {}}, os.path.join(case_dir, "result.pt"))
    dist.barrier()


def merge_checks(engine: str, output_dir: str) -> dict:
    """Merging where the base weights are whole (DDP, ZeRO-2) and inside a ZeRO-3 gather keeps the logits; merging
    sharded weights is refused; under ZeRO-3, saving partitioned tensors is refused."""
    rank, world_size = dist.get_rank(), dist.get_world_size()
    run = build(engine, "dora", output_dir)
    checks = {}
    if engine.startswith("zero3") and rank == 0:
        # right after deepspeed.initialize every parameter is partitioned (later, ZeRO-3 may keep some gathered)
        not_gathered = os.path.join(output_dir, "not_gathered")
        try:
            run.peft_model.save_pretrained(not_gathered)
            checks["save_error"] = None
        except ValueError as error:
            checks["save_error"] = str(error)
        checks["save_left_files"] = os.listdir(not_gathered) if os.path.isdir(not_gathered) else []
    batch = cases.rows_of_rank(cases.batches()[0], rank, world_size)
    run.backward_and_step(run.forward(input_ids=batch, labels=batch).loss)
    run.peft_model.eval()
    with torch.no_grad():
        unmerged = run.forward(input_ids=cases.eval_batch()).logits
    try:
        run.peft_model.merge_adapter()
        checks["merge_error"] = None
    except ValueError as error:
        checks["merge_error"] = str(error)
    if engine.startswith("zero3"):
        import deepspeed

        with deepspeed.zero.GatheredParameters(list(run.peft_model.parameters()), modifier_rank=0):
            run.peft_model.merge_adapter()
    if checks["merge_error"] is None or engine.startswith("zero3"):
        with torch.no_grad():
            merged = run.forward(input_ids=cases.eval_batch()).logits
        checks["merged_logits_difference"] = (merged - unmerged).abs().max().item()
    return checks


@contextlib.contextmanager
def _recorded(output_dir: str, name: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        os.makedirs(os.path.join(output_dir, name), exist_ok=True)
        path = os.path.join(output_dir, name, f"error-rank{dist.get_rank()}.txt")
        with open(path, "w") as file:
            file.write(traceback.format_exc())


def run_engine(engine: str, case_names: list[str], output_dir: str) -> None:
    if engine == "zero3_init" and dist.get_rank() == 0:
        cases.base_model().save_pretrained(os.path.join(output_dir, "base"))
    dist.barrier()
    for case in case_names:
        start = time.perf_counter()
        with _recorded(output_dir, case):
            if engine == "trainer_zero3":
                run_trainer_case(case, output_dir)
            else:
                run_case(engine, case, output_dir)
        if os.environ.get("PEFT_TEST_TIMING") and dist.get_rank() == 0:
            print(f"timing: {engine} {case} {time.perf_counter() - start:.2f} s", flush=True)
    checks = {}
    with _recorded(output_dir, "merge_checks"):
        checks = merge_checks(engine, output_dir) if engine != "trainer_zero3" else {}
    if dist.get_rank() == 0:
        with open(os.path.join(output_dir, "checks.json"), "w") as file:
            json.dump(checks, file)
    dist.barrier()


def main() -> None:
    output_dir, *requests = sys.argv[1:]
    runs = [(engine, names.split(",")) for engine, _, names in (request.partition("=") for request in requests)]
    unknown = [engine for engine, _ in runs if engine not in ENGINES]
    if unknown:
        raise SystemExit(f"unknown engines {unknown}; valid: {ENGINES}")
    timeout = datetime.timedelta(seconds=60)  # a collective some rank never joins fails instead of hanging
    if any(engine.startswith("zero") for engine, _ in runs):
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo", timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    # what is alive now lives to the end: collections (DeepSpeed runs one per model) need not walk it again
    gc.collect()
    gc.freeze()
    for engine, case_names in runs:
        run_engine(engine, case_names, os.path.join(output_dir, engine))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
