#!/usr/bin/env python3
"""A small reader/writer of the .safetensors format (the `safetensors` package is not installed here).

Layout of a file (all integers little-endian):

    bytes [0, 8)        N, an unsigned 64-bit integer: the length of the header
    bytes [8, 8 + N)    the header: a UTF-8 JSON object
                          {"<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
                           "__metadata__": {"<key>": "<string>", ...}}          (the metadata entry is optional)
                        padded at the end with spaces (0x20) so that 8 + N is a multiple of 8
    bytes [8 + N, ...)  the data buffer; a tensor's bytes are buffer[begin:end], row-major (C order),
                        little-endian, end - begin = prod(shape) * itemsize; the tensors tile the buffer
                        with neither gaps nor overlaps

The writer stores tensors in sorted name order, one after another.  The reader checks everything above and
raises ValueError naming the file and the entry at fault.

    save_file({"w": tensor_or_array, ...}, path, metadata={"format": "pt"})
    load_file(path)            -> {name: torch.Tensor}     (load_file(path, numpy=True) -> {name: np.ndarray})
    python3 safetensors_lite.py FILE...                    lists each file's tensors
"""
import json
import struct
import sys

import numpy as np

try:
    import torch
except ImportError:  # the reader/writer also works on numpy arrays alone
    torch = None

# dtype name -> (numpy dtype, item size).  BF16 has no numpy dtype: it is read through torch.
_NUMPY_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_ITEM_SIZE = {name: dt.itemsize for name, dt in _NUMPY_DTYPES.items()}
_ITEM_SIZE["BF16"] = 2

_MAX_HEADER = 100 * 1024 * 1024  # the reference implementation's limit


def _dtype_name(array):
    for name, dt in _NUMPY_DTYPES.items():
        if array.dtype == dt or array.dtype == dt.newbyteorder("="):
            return name
    raise ValueError(f"safetensors_lite: unsupported dtype {array.dtype}")


def _to_numpy(name, value):
    if torch is not None and isinstance(value, torch.Tensor):
        if value.dtype == torch.bfloat16:
            raise ValueError(f"safetensors_lite: tensor '{name}': writing BF16 is not supported")
        value = value.detach().cpu().contiguous().numpy()
    array = np.ascontiguousarray(np.asarray(value))
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return array


def save_file(tensors, path, metadata=None):
    """Writes {name: torch.Tensor | np.ndarray} to path.  metadata: {str: str} or None."""
    header = {}
    chunks = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or name == "__metadata__" or not name:
            raise ValueError(f"safetensors_lite: invalid tensor name {name!r}")
        array = _to_numpy(name, tensors[name])
        data = array.tobytes(order="C")
        header[name] = {"dtype": _dtype_name(array), "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("safetensors_lite: metadata must map strings to strings")
        header["__metadata__"] = dict(metadata)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in chunks:
            f.write(data)


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data buffer as bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"safetensors_lite: {path}: file of {len(raw)} bytes is shorter than the 8-byte length")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > _MAX_HEADER or 8 + n > len(raw):
        raise ValueError(f"safetensors_lite: {path}: header length {n} exceeds the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"safetensors_lite: {path}: header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"safetensors_lite: {path}: header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    buffer = raw[8 + n:]
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' must have exactly dtype, shape, data_offsets")
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _ITEM_SIZE:
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' has unsupported dtype {dtype!r}")
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' has invalid shape {shape!r}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= len(buffer)):
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' has data_offsets {offsets!r} outside the "
                             f"{len(buffer)}-byte buffer")
        expected = int(np.prod(shape, dtype=np.int64)) * _ITEM_SIZE[dtype]
        if offsets[1] - offsets[0] != expected:
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' spans {offsets[1] - offsets[0]} bytes, "
                             f"{dtype} {shape} needs {expected}")
        spans.append((offsets[0], offsets[1], name))
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            raise ValueError(f"safetensors_lite: {path}: entry '{name}' starts at {begin}, expected {position} "
                             "(gap or overlap)")
        position = end
    if position != len(buffer):
        raise ValueError(f"safetensors_lite: {path}: tensors cover {position} of {len(buffer)} buffer bytes")
    return header, metadata, buffer


def load_file(path, numpy=False):
    """Reads path; returns {name: torch.Tensor} (or {name: np.ndarray} with numpy=True)."""
    header, _, buffer = read_header(path)
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        shape = tuple(entry["shape"])
        if entry["dtype"] == "BF16":
            if torch is None or numpy:
                raise ValueError(f"safetensors_lite: {path}: entry '{name}' is BF16, readable only as torch")
            bits = np.frombuffer(buffer[begin:end], dtype="<i2").reshape(shape).copy()
            out[name] = torch.from_numpy(bits).view(torch.bfloat16)
            continue
        array = np.frombuffer(buffer[begin:end], dtype=_NUMPY_DTYPES[entry["dtype"]]).reshape(shape).copy()
        out[name] = array if (numpy or torch is None) else torch.from_numpy(array)
    return out


def main(argv):
    for path in argv:
        header, metadata, _ = read_header(path)
        print(f"{path}: {len(header)} tensors, metadata {metadata}")
        for name in sorted(header):
            print(f"  {name:70s} {header[name]['dtype']:5s} {header[name]['shape']}")


if __name__ == "__main__":
    main(sys.argv[1:])
