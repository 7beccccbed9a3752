"""Adapters trained under DDP, FSDP1, FSDP2 and DeepSpeed ZeRO-2/3 on 2 CPU processes (gloo) follow the
single-process run step by step, and the adapter saved from the sharded model by the documented recipe reloads in one
process with the same logits (REQUIREMENTS HOST-ACC-1, HOST-DS-1/2, HOST-FSDP-1/3).

The torch engines are one ``torchrun`` launch, the DeepSpeed ones another, each running all its cases in one
process group (``distributed_worker.py``); the tests here compare what they wrote with an independent
single-process run of the same model and data.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

pytest.importorskip("transformers")
if not torch.distributed.is_available():
    pytest.skip("this torch build has no torch.distributed", allow_module_level=True)

import distributed_cases as cases  # noqa: E402

from peft import PeftModel  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "distributed_worker.py")
# a launch that takes longer is stuck (a collective some rank never joins); the first DeepSpeed launch on a machine
# whose set-up did not build DeepSpeed's communication op compiles it (about 80 s)
LAUNCH_TIMEOUT_S = 420

CORE = ["lora", "dora", "modules_to_save", "trainable_tokens", "target_parameters"]
ALL = list(cases.CASES)
# FSDP1 with use_orig_params=False flattens each unit's parameters into one tensor, which must be all trainable or
# all frozen: the wrap policy gives adapter modules their own units, but methods whose trainable tensors are not
# modules of their own (LoHa, IA3, VeRA, trainable tokens, ...) share a unit with frozen weights
FLAT_PARAM_CASES = [
    *("lora", "dora", "modules_to_save", "target_parameters", "oft", "ln_tuning", "prompt_tuning", "psoft", "qlora")
]
ENGINE_CASES = {
    "ddp": ALL,
    "fsdp1": ALL,
    "fsdp1_flat": FLAT_PARAM_CASES,
    "fsdp2": ALL,
    "zero2": [*CORE, "loha", "qlora"],
    "zero3": ALL,
    "zero3_init": [*CORE, "ln_tuning", "miss_bat", "prompt_tuning", "psoft", "hira"],
    "trainer_zero3": ["trainable_tokens"],
}
SHARDED = {"fsdp1", "fsdp1_flat", "fsdp2", "zero3", "zero3_init"}


def _needs(engine: str, case: str | None = None) -> list:
    marks = []
    if "zero" in engine:
        missing = importlib.util.find_spec("deepspeed") is None
        marks.append(pytest.mark.skipif(missing, reason="deepspeed is not installed (scripts/setup.sh installs it)"))
    if case in cases.QUANTIZED_CASES:
        missing = importlib.util.find_spec("bitsandbytes") is None
        reason = "bitsandbytes is not installed (scripts/setup.sh installs it)"
        marks.append(pytest.mark.skipif(missing, reason=reason))
    return marks


LAUNCHES = {
    "torch": [engine for engine in ENGINE_CASES if "zero" not in engine],
    "deepspeed": [engine for engine in ENGINE_CASES if "zero" in engine],
}


@functools.cache
def _launch(launch: str, output_dir: str) -> str | None:
    """Run the worker for the engines of ``launch`` once per test session: None when it finished, else why not.

    A failed launch is remembered like a finished one, so that a stuck launch costs its timeout once, not once per
    test that reads its results.
    """
    requests = [f"{engine}={','.join(ENGINE_CASES[engine])}" for engine in LAUNCHES[launch]]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command += [WORKER, output_dir, *requests]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    # where scripts/setup.sh built DeepSpeed's communication op
    environment.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(sys.prefix, "torch_extensions"))
    # its own process group, so that a stuck launch is ended with its workers, not only torchrun
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        return f"torchrun for {launch} did not finish in {LAUNCH_TIMEOUT_S} s:\n{stderr[-6000:]}"
    if process.returncode != 0:
        return f"torchrun for {launch} failed ({process.returncode}):\n{stdout[-3000:]}{stderr[-6000:]}"
    return None


@pytest.fixture(scope="session")
def engine_output(tmp_path_factory):
    """``engine_output(engine)``: the folder its worker wrote, launching the worker the first time."""
    root = str(tmp_path_factory.getbasetemp() / "distributed")

    def run(engine: str) -> str:
        failure = _launch(next(launch for launch, engines in LAUNCHES.items() if engine in engines), root)
        if failure is not None:
            pytest.fail(failure)
        return os.path.join(root, engine)

    return run


@functools.cache
def _single_process(case: str) -> tuple[list[float], torch.Tensor]:
    losses, logits, _ = cases.train_single_process(case)
    return losses, logits


@functools.cache
def _base_logits(case: str) -> torch.Tensor:
    with torch.no_grad():
        return cases.base_model(case)(input_ids=cases.eval_batch()).logits


def _case_result(output_dir: str, case: str) -> dict:
    case_dir = os.path.join(output_dir, case)
    errors = sorted(f for f in os.listdir(case_dir) if f.startswith("error")) if os.path.isdir(case_dir) else []
    if errors:
        pytest.fail(f"{case} failed in the worker:\n" + open(os.path.join(case_dir, errors[0])).read()[-4000:])
    return torch.load(os.path.join(case_dir, "result.pt"))


PAIRS = [
    pytest.param(engine, case, id=f"{engine}-{case}", marks=_needs(engine, case))
    for engine, engine_cases in ENGINE_CASES.items()
    for case in engine_cases
]


@pytest.mark.parametrize(("engine", "case"), PAIRS)
def test_sharded_training_matches_one_process_and_the_saved_adapter_reloads(engine_output, engine, case):
    output_dir = engine_output(engine)
    result = _case_result(output_dir, case)
    reloaded = PeftModel.from_pretrained(cases.base_model(case), os.path.join(output_dir, case)).eval()
    with torch.no_grad():
        reloaded_logits = reloaded(input_ids=cases.eval_batch()).logits
    # the file holds exactly what the sharded model computed with ...
    torch.testing.assert_close(reloaded_logits, result["logits"], rtol=0, atol=1e-5)
    if result["losses"] is not None:  # the Trainer samples and schedules its own way: no one-process twin
        losses, logits = _single_process(case)
        # the same loss at every step: the ranks' halves of each batch add up to the whole batch
        torch.testing.assert_close(torch.tensor(result["losses"]), torch.tensor(losses), rtol=0, atol=1e-5)
        # ... which is what one process trains (up to the order of gradient reductions)
        torch.testing.assert_close(reloaded_logits, logits, rtol=0, atol=1e-4)
    base_logits = _base_logits(case)
    trained = (reloaded_logits[:, -base_logits.shape[1] :] - base_logits).abs().max()
    assert trained > 1e-2, f"{case}: training changed the logits by only {trained}; the comparison would be vacuous"

    facts = result["facts"]
    if engine in ("zero3", "zero3_init"):
        assert facts["adapter_partitioned"], "ZeRO-3 must hold every parameter partitioned for this test to mean much"
    if case in cases.QUANTIZED_CASES:
        assert facts["quantized_layers"] > 0, "the base the engine trained on must be quantized"
        if engine.startswith("zero3"):
            assert facts["base_partitioned"], "ZeRO-3 must partition the packed 4-bit weights too"
    if engine == "zero3_init":
        assert facts["base_partitioned_before_injection"], "the base model must be partitioned when adapters are added"


# the Trainer run has no merge checks
ENGINES = [pytest.param(e, marks=_needs(e)) for e in ENGINE_CASES if e != "trainer_zero3"]


@pytest.mark.parametrize("engine", ENGINES)
def test_merging_sharded_weights_is_refused_and_works_where_they_are_whole(engine_output, engine):
    output_dir = engine_output(engine)
    failed = os.path.join(output_dir, "merge_checks")
    errors = sorted(os.listdir(failed)) if os.path.isdir(failed) else []
    assert not errors, open(os.path.join(failed, errors[0])).read()[-4000:]
    with open(os.path.join(output_dir, "checks.json")) as file:
        checks = json.load(file)
    if engine in SHARDED:
        assert checks["merge_error"] is not None and "Cannot merge an adapter" in checks["merge_error"]
        # the message names the documented way around it
        assert "GatheredParameters" in checks["merge_error"] and "full state dict" in checks["merge_error"]
    else:
        assert checks["merge_error"] is None
    if engine.startswith("zero3"):
        # inside GatheredParameters(modifier_rank=0) merging works and keeps the outputs
        assert checks["merged_logits_difference"] < 1e-4
        assert "only shards" in checks["save_error"] and checks["save_left_files"] == []
    elif engine in ("ddp", "zero2"):
        assert checks["merged_logits_difference"] < 1e-4
