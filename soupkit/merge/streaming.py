"""Weighted averages of whole model folders, tensor by tensor, with only torch and safetensors.

For each tensor of the first input's files, the same tensor is read from every input, accumulated
in float32 (float64 stays float64) and cast back to its dtype. Tensors over CHUNK_BYTES (in
float32) go in row chunks through `safe_open(...).get_slice`, so what is held at once is one chunk
per accumulator, whatever the model size or the number of inputs. Integer and bool tensors
(position ids, masks) are copied from the first input: an average of indices means nothing.
A tensor (chunk) that every weighted input holds identically, such as the frozen bottom of
`train: top:<k>` checkpoints, is copied, never averaged: a weighted sum of equal values is not
always bit-equal to them, and the soup must keep the base's bottom exactly (its trunk cache).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from soupkit.model_folder import ModelFolder, TensorInfo
from soupkit.merge.safetensors_writer import PlannedTensor, SafetensorsWriter

if TYPE_CHECKING:
    import torch

# Row chunks small enough for the accumulator to stay in a CPU's cache; chunk sizes are compared in
# docs/benchmarks.md (bench/merge.py).
CHUNK_BYTES = 4 * 2**20
# safetensors maps files into memory and reads are views of that mapping: the pages stay resident
# for as long as the handle lives. Dropping every handle after this many bytes (all inputs
# together) lets them go, so resident memory stays flat in the size and number of the inputs.
MAPPED_BYTES = 256 * 2**20


class TensorReader:
    """Reads tensors (or row ranges of them) from any input's safetensors files."""

    def __init__(self) -> None:
        self._handles: dict[Path, object] = {}
        self._bytes_since_reset = 0

    def read(self, tensor: TensorInfo, start: int | None = None, stop: int | None = None) -> torch.Tensor:
        from safetensors import safe_open

        handle = self._handles.get(tensor.file)
        if handle is None:
            handle = self._handles[tensor.file] = safe_open(tensor.file, framework="pt")
        value = handle.get_tensor(tensor.name) if start is None else handle.get_slice(tensor.name)[start:stop]
        self._bytes_since_reset += value.nbytes
        if self._bytes_since_reset >= MAPPED_BYTES:
            self._handles.clear()  # each mapping goes once the views read through it are dropped
            self._bytes_since_reset = 0
        return value


def stream_weighted_average(inputs: list[ModelFolder], weights: list[float], destination: Path) -> None:
    """Write the weighted average of `inputs` (weights already normalised) into `destination`,
    one safetensors file per file of the first input, same names and tensor order."""
    with _one_thread():
        _stream(inputs, weights, destination)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Averaging is memory-bound: one thread is as fast as two here, and it does not stall in
    OpenMP barriers when another process holds a core (measured: 2 threads up to 10x slower)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _stream(inputs: list[ModelFolder], weights: list[float], destination: Path) -> None:
    from safetensors import safe_open

    reader, scratch = TensorReader(), Scratch()
    reference = inputs[0]
    for index, module in enumerate(reference.modules):
        counterparts = [folder.modules[index] for folder in inputs]
        for relative_file in module.weight_files:
            file = reference.path / relative_file
            tensors = [t for t in module.tensors.values() if t.file == file]
            with safe_open(file, framework="pt") as handle:
                metadata = handle.metadata()
            planned = [PlannedTensor(t.name, t.dtype, t.shape) for t in tensors]
            with SafetensorsWriter(destination / relative_file, planned, metadata) as writer:
                for tensor in tensors:
                    # an integer buffer is the first input's (others may not even hold it)
                    sources = [other.tensors[tensor.name] for other in counterparts] if tensor.is_floating else [tensor]
                    for start, stop in row_chunks(tensor):
                        if tensor.is_floating:
                            merged = _weighted_sum(reader, scratch, sources, weights, start, stop)
                        else:
                            merged = reader.read(sources[0], start, stop)
                        writer.write(as_bytes(merged))
                        del merged


def row_chunks(tensor: TensorInfo) -> Iterator[tuple[int | None, int | None]]:
    """(start, stop) row ranges of at most ~CHUNK_BYTES in float32; (None, None) = whole tensor."""
    chunk_bytes = CHUNK_BYTES
    elements = 1
    for size in tensor.shape:
        elements *= size
    if not tensor.shape or elements * 4 <= chunk_bytes:
        yield None, None
        return
    rows = tensor.shape[0]
    row_bytes = max(1, elements // rows) * 4
    step = max(1, chunk_bytes // row_bytes)
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


class Scratch:
    """One float32 buffer reused for every chunk's sum, so it stays in cache and costs no page
    faults. Float64 tensors and single rows over CHUNK_BYTES get their own allocation."""

    def __init__(self) -> None:
        self._buffer: torch.Tensor | None = None

    def like(self, value: torch.Tensor) -> torch.Tensor:
        import torch

        if value.dtype == torch.float64 or value.numel() * 4 > CHUNK_BYTES:
            return torch.empty(value.shape, dtype=torch.float64 if value.dtype == torch.float64 else torch.float32)
        if self._buffer is None or self._buffer.numel() * 4 < CHUNK_BYTES:
            self._buffer = torch.empty(CHUNK_BYTES // 4, dtype=torch.float32)
        return self._buffer[: value.numel()].view(value.shape)


def _weighted_sum(reader: TensorReader, scratch: Scratch, sources: list[TensorInfo], weights: list[float],
                  start: int | None, stop: int | None) -> torch.Tensor:
    """Sum of weight * tensor in float32 (float64 kept), cast back to the inputs' dtype; the
    first input's values when every weighted input's are equal. The result may be a view of the
    scratch buffer: write it before the next call."""
    import torch

    total = first = None
    dtype = None
    identical = True
    for source, weight in zip(sources, weights):
        if weight == 0 and total is not None:
            continue
        value = reader.read(source, start, stop)
        if total is None:
            dtype, first = value.dtype, value
            total = scratch.like(value).copy_(value).mul_(weight)
        else:
            identical = identical and torch.equal(value, first)
            total.add_(value, alpha=weight)
        del value
    return first if identical else total.to(dtype)


def as_bytes(tensor: torch.Tensor):
    """The raw little-endian bytes of a tensor, without a copy when it is contiguous."""
    import torch

    return tensor.contiguous().reshape(-1).view(torch.uint8).numpy()
