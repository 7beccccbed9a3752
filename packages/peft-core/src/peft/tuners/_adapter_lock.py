"""Switching adapters while other threads run forward passes.

A switch (``set_adapter``, enabling/disabling, merging, adding or deleting an adapter) changes the adapter layers one
after another, so a forward running meanwhile can compute with some layers switched and others not. Each model
holding adapters has one lock: switches made through the lifecycle methods take it exclusively; forward passes that
run inside ``peft.helpers.adapters_in_use(model)`` share it, so they see every layer before the switch or every layer
after it. Forwards outside that block are not synchronised (no cost for single-threaded use).

The lock lives beside the model (a weak mapping), not in it, so copying and pickling the model are unaffected.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from torch import nn


class AdapterLock:
    """Many readers (forward passes) or one writer (a switch); a waiting writer keeps new readers out, so a steady
    stream of forwards cannot starve a switch. The writer may re-enter (a switch made of other switches)."""

    def __init__(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._readers: dict[int, int] = {}  # thread id -> depth
        self._writer: int | None = None
        self._writer_depth = 0
        self._writers_waiting = 0

    @contextmanager
    def shared(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            # a thread already inside (reading or switching) re-enters; others wait for switches, running or queued
            if me not in self._readers and self._writer != me:
                while self._writer is not None or self._writers_waiting:
                    self._condition.wait()
            self._readers[me] = self._readers.get(me, 0) + 1
        try:
            yield
        finally:
            with self._condition:
                self._readers[me] -= 1
                if not self._readers[me]:
                    del self._readers[me]
                    self._condition.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        me = threading.get_ident()
        with self._condition:
            if self._writer == me:
                self._writer_depth += 1
            else:
                if me in self._readers:
                    raise RuntimeError(
                        "Cannot switch adapters inside adapters_in_use() in the same thread: the switch would wait "
                        "for the block to end. Switch before or after the block."
                    )
                self._writers_waiting += 1
                try:
                    while self._writer is not None or self._readers:
                        self._condition.wait()
                finally:
                    self._writers_waiting -= 1
                self._writer, self._writer_depth = me, 1
        try:
            yield
        finally:
            with self._condition:
                self._writer_depth -= 1
                if not self._writer_depth:
                    self._writer = None
                    self._condition.notify_all()


_locks: weakref.WeakKeyDictionary[nn.Module, AdapterLock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def adapter_lock(model: nn.Module) -> AdapterLock:
    """The lock of ``model``, the module whose layers hold the adapters (created on first use)."""
    lock = _locks.get(model)
    if lock is None:
        with _locks_guard:
            lock = _locks.setdefault(model, AdapterLock())
    return lock


_MethodT = TypeVar("_MethodT", bound=Callable[..., Any])


def switches_adapters(holder: Callable[[Any], nn.Module]) -> Callable[[_MethodT], _MethodT]:
    """Decorate a method that switches adapters: it runs holding ``adapter_lock(holder(self))`` exclusively."""

    def decorate(method: _MethodT) -> _MethodT:
        @functools.wraps(method)
        def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
            with adapter_lock(holder(self)).exclusive():
                return method(self, *args, **kwargs)

        return locked  # type: ignore[return-value]

    return decorate
