"""Adapter switches and forward passes from several threads: inside ``adapters_in_use`` a forward never sees a
half-switched model; switching inside one's own block is an error, not a deadlock (issue #14).
"""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch

from peft import PeftModel, get_peft_model
from tests.tiny_models import lora_on_both, two_linear_mlp


# ------------------------------------------------------------------------------------ threads
def _two_adapters() -> tuple[PeftModel, torch.Tensor, torch.Tensor, torch.Tensor]:
    model = get_peft_model(two_linear_mlp(), lora_on_both(), adapter_name="one")
    model.add_adapter("two", lora_on_both(lora_alpha=40))
    model.eval()
    x = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        model.set_adapter("two")
        out_b = model(x)
        model.set_adapter("one")
        out_a = model(x)
    return model, x, out_a, out_b


def _forward_while_switching(model, x, guarded: bool) -> torch.Tensor:
    """One forward in a thread, paused after the first layer while another thread switches to adapter 'two'."""
    import threading

    from peft.helpers import adapters_in_use

    paused, switched = threading.Event(), threading.Event()

    def pause(module, inputs, output):
        paused.set()
        switched.wait(timeout=1.0)  # returns at once if the switch got through, after 1 s if it waits for us

    def switch():
        paused.wait()
        model.set_adapter("two")
        switched.set()

    hook = model.base_model.model.lin0.register_forward_hook(pause)
    switcher = threading.Thread(target=switch)
    switcher.start()
    try:
        with torch.no_grad(), adapters_in_use(model) if guarded else nullcontext():
            output = model(x)
    finally:
        hook.remove()
        switcher.join()
    return output


def test_a_forward_inside_adapters_in_use_never_sees_half_switched_layers():
    """The reference makes no promise: a set_adapter in another thread lands between the layers of a running
    forward. Inside adapters_in_use() the switch waits for the forward."""
    model, x, out_a, out_b = _two_adapters()
    torch.testing.assert_close(_forward_while_switching(model, x, guarded=True), out_a)
    assert model.active_adapters == ["two"]  # the switch happened after the block
    with torch.no_grad():
        torch.testing.assert_close(model(x), out_b)


def test_without_the_block_a_switch_can_land_in_the_middle_of_a_forward():
    """What adapters_in_use() is for (docs/troubleshooting.md): unsynchronised, the first layer computed with
    adapter 'one' and the second with 'two', an output of neither."""
    model, x, out_a, out_b = _two_adapters()
    output = _forward_while_switching(model, x, guarded=False)
    assert not torch.allclose(output, out_a) and not torch.allclose(output, out_b)


def test_many_threads_forwarding_while_one_switches_see_only_whole_adapters():
    import threading

    from peft.helpers import adapters_in_use

    model, x, out_a, out_b = _two_adapters()
    bad, seen = [], set()

    def serve():
        for _ in range(60):
            with torch.no_grad(), adapters_in_use(model):
                output = model(x)
            if torch.allclose(output, out_a):
                seen.add("one")
            elif torch.allclose(output, out_b):
                seen.add("two")
            else:
                bad.append(output)

    def switch():
        for i in range(60):
            model.set_adapter("two" if i % 2 == 0 else "one")
        model.set_adapter("two")

    threads = [threading.Thread(target=serve) for _ in range(3)] + [threading.Thread(target=switch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not bad
    with torch.no_grad(), adapters_in_use(model):
        torch.testing.assert_close(model(x), out_b)


def test_switching_inside_ones_own_block_is_an_error_not_a_deadlock():
    import copy

    from peft.helpers import adapters_in_use

    model, x, _, _ = _two_adapters()
    with adapters_in_use(model), pytest.raises(RuntimeError, match="inside adapters_in_use"):
        model.set_adapter("two")
    model.set_adapter("two")  # fine outside
    copy.deepcopy(model)  # the lock is kept beside the model, not in it
