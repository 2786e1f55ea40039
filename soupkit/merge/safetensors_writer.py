"""Write a safetensors file one tensor (or row chunk) at a time.

`safetensors.torch.save_file` needs every tensor of a file in memory at once: for a merged model
that is a second full copy of the model. The format is a little-endian u64 header length, a JSON
header with each tensor's dtype, shape and byte range, then the raw bytes in header order. When
the shapes are known in advance (they are: they come from the inputs' headers) the header can be
written first and the data streamed after it. The result is read back by `safe_open` in tests.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

ITEM_SIZES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}


@dataclass(frozen=True)
class PlannedTensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * ITEM_SIZES[self.dtype]


class SafetensorsWriter:
    """Use as a context manager; call `write(bytes_like)` for the planned tensors in order.

    A tensor may arrive in several pieces (row chunks). Closing checks every byte arrived.
    """

    def __init__(self, path: Path, tensors: list[PlannedTensor], metadata: dict[str, str] | None = None):
        self.path = path
        self.tensors = tensors
        header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
        offset = 0
        for tensor in tensors:
            header[tensor.name] = {
                "dtype": tensor.dtype,
                "shape": list(tensor.shape),
                "data_offsets": [offset, offset + tensor.nbytes],
            }
            offset += tensor.nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
        self._header = struct.pack("<Q", len(encoded)) + encoded
        self._data_size = offset
        self._written = 0
        self._file: BinaryIO | None = None

    def __enter__(self) -> SafetensorsWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb")
        self._file.write(self._header)
        return self

    def write(self, data: memoryview | bytes) -> None:
        assert self._file is not None, "use SafetensorsWriter as a context manager"
        self._written += self._file.write(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self._file is not None
        self._file.close()
        if exc_type is None and self._written != self._data_size:
            raise RuntimeError(f"{self.path}: wrote {self._written} data bytes, planned {self._data_size}")
