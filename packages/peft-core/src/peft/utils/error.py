"""The exception classes of this library.

Every error a load raises because of what is in the adapter's files is a ``CheckpointMismatchError`` or a
``ValueError`` naming the file and the field; ``docs/troubleshooting.md`` lists them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch


class PeftError(Exception):
    """Base of PEFT's own errors."""


class NoMatchingPeftModuleError(PeftError, ValueError):
    """The adapter being injected matched no module (or parameter) of the base model.

    Usually a misconfigured ``target_modules``; code that adds such an adapter on purpose can catch this error.
    A ``ValueError`` too, like the error raised before this class existed.
    """


class ConfigFieldError(PeftError, ValueError, TypeError):
    """A config field holds a value of the wrong type or out of range (the message names the field, the value and
    what is valid). A ``ValueError``, like peft's other errors about bad values, and a ``TypeError``, what a wrong
    type raises in Python and in the reference for some fields."""


@dataclass(frozen=True)
class SizeMismatch:
    """One checkpoint tensor whose shape differs from the model tensor it is loaded into."""

    checkpoint_key: str
    live_key: str
    checkpoint_shape: tuple[int, ...]
    model_shape: tuple[int, ...]

    def torch_line(self) -> str:
        """The line ``torch.nn.Module.load_state_dict`` writes for this mismatch (hosts match on its text)."""
        return (
            f"size mismatch for {self.live_key}: copying a param with shape {torch.Size(self.checkpoint_shape)} from "
            f"checkpoint, the shape in current model is {torch.Size(self.model_shape)}."
        )


@dataclass(frozen=True)
class DtypeMismatch:
    """One checkpoint tensor whose dtype cannot hold the values of the model tensor it is loaded into (integers or
    bools for float weights, floats for integer indices): loading would cast them silently."""

    checkpoint_key: str
    live_key: str
    checkpoint_dtype: torch.dtype
    model_dtype: torch.dtype

    @classmethod
    def between(
        cls, checkpoint_key: str, live_key: str, checkpoint: torch.Tensor, model: torch.Tensor
    ) -> DtypeMismatch | None:
        """The mismatch of ``checkpoint`` loaded into ``model``, or None if its dtype is of the same kind (floating,
        complex, integer or bool); widths may differ, as loading casts them."""
        if _dtype_kind(checkpoint.dtype) == _dtype_kind(model.dtype):
            return None
        return cls(checkpoint_key, live_key, checkpoint.dtype, model.dtype)

    def line(self) -> str:
        return (
            f"dtype mismatch for {self.live_key}: the checkpoint holds {self.checkpoint_dtype}, which cannot stand "
            f"for the model's {self.model_dtype} values without changing them."
        )


def _dtype_kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype == torch.bool:
        return "bool"
    return "floating" if dtype.is_floating_point else "integer"


class CheckpointMismatchError(PeftError, RuntimeError, ValueError):
    """A checkpoint does not fit the model it is loaded into: tensors of the wrong shape, or keys missing or left over
    where the load cannot go on without them.

    Also raised for tensors whose dtype cannot hold the model's values (an integer tensor for float weights).

    A ``RuntimeError`` like the one ``torch.nn.Module.load_state_dict`` raises (its message contains torch's own
    ``size mismatch for <key>: ...`` lines, with the live key, adapter name included), and a ``ValueError`` like
    peft's other errors about bad input, so code written against either keeps working.

    Attributes:
        size_mismatches: the tensors whose shapes differ.
        dtype_mismatches: the tensors whose dtypes cannot hold the model's values.
        missing_keys / unexpected_keys: live keys the checkpoint lacks / checkpoint keys that fit nothing, where
            they caused the error.
        file: the file the checkpoint was read from, when known.
    """

    def __init__(
        self,
        summary: str,
        size_mismatches: Sequence[SizeMismatch] = (),
        missing_keys: Sequence[str] = (),
        unexpected_keys: Sequence[str] = (),
        file: str | None = None,
        dtype_mismatches: Sequence[DtypeMismatch] = (),
    ) -> None:
        self.summary = summary
        self.size_mismatches = tuple(size_mismatches)
        self.dtype_mismatches = tuple(dtype_mismatches)
        self.missing_keys = tuple(missing_keys)
        self.unexpected_keys = tuple(unexpected_keys)
        self.file = file
        super().__init__(self._message())

    def _message(self) -> str:
        lines = [f"{self.file}: {self.summary}" if self.file else self.summary]
        if self.missing_keys:
            lines.append("Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in self.missing_keys) + ".")
        if self.unexpected_keys:
            lines.append("Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in self.unexpected_keys) + ".")
        lines.extend(mismatch.torch_line() for mismatch in self.size_mismatches)
        lines.extend(mismatch.line() for mismatch in self.dtype_mismatches)
        return "\n\t".join(lines)

    def in_file(self, file: str) -> CheckpointMismatchError:
        """The same error, naming ``file`` as the checkpoint it comes from."""
        return CheckpointMismatchError(
            self.summary, self.size_mismatches, self.missing_keys, self.unexpected_keys, file, self.dtype_mismatches
        )

    def __reduce__(self):  # picklable across processes (multiprocessing, torch.distributed)
        return (
            type(self),
            (
                self.summary,
                self.size_mismatches,
                self.missing_keys,
                self.unexpected_keys,
                self.file,
                self.dtype_mismatches,
            ),
        )


def dtype_mismatch_error(mismatches: Sequence[DtypeMismatch]) -> CheckpointMismatchError:
    """The error for checkpoint tensors whose dtypes cannot hold the model's values."""
    first = mismatches[0]
    return CheckpointMismatchError(
        f"Tensor {first.checkpoint_key!r} of the checkpoint has dtype {first.checkpoint_dtype}, which cannot hold "
        f"adapter values of dtype {first.model_dtype}; the file was not written by peft or was changed since.",
        dtype_mismatches=mismatches,
    )


def size_mismatch_error(mismatches: Sequence[SizeMismatch], adapter_name: str, hint: str) -> CheckpointMismatchError:
    """The error for tensors of ``adapter_name`` whose shapes do not fit, worded for a reader first."""
    first = mismatches[0]
    summary = (
        f"Size mismatch for {first.checkpoint_key!r}: the checkpoint has shape {tuple(first.checkpoint_shape)}, the "
        f"model expects {tuple(first.model_shape)}"
    )
    more = len(mismatches) - 1
    summary += f" ({more} more tensor{'s' if more > 1 else ''} of adapter {adapter_name!r} too)." if more else "."
    return CheckpointMismatchError(f"{summary} {hint}".rstrip(), size_mismatches=mismatches)


def check_tensor_fits(
    file_key: str,
    live_key: str,
    tensor: torch.Tensor,
    current: torch.Tensor,
    adapter_name: str = "",
    hint: str = "Check the sizes in the adapter's config.",
) -> None:
    """Raise the error loading ``tensor`` into ``current`` would raise (shape or dtype), naming ``file_key``; for
    tensors a method's file-layout conversion takes out of the checkpoint before the generic loading checks them.

    Raises:
        CheckpointMismatchError: with the mismatch.
    """
    if tensor.shape != current.shape:
        mismatch = SizeMismatch(file_key, live_key, tuple(tensor.shape), tuple(current.shape))
        raise size_mismatch_error([mismatch], adapter_name, hint)
    dtype_mismatch = DtypeMismatch.between(file_key, live_key, tensor, current)
    if dtype_mismatch is not None:
        raise dtype_mismatch_error([dtype_mismatch])


@contextmanager
def checkpoint_file(path: str) -> Iterator[None]:
    """Within the block, a :class:`CheckpointMismatchError` is re-raised naming ``path`` as its checkpoint."""
    try:
        yield
    except CheckpointMismatchError as exc:
        if exc.file is not None:
            raise
        raise exc.in_file(path).with_traceback(exc.__traceback__) from None
