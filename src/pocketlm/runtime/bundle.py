"""Reading ``.litertlm`` bundles (LiteRT-LM's container) without LiteRT-LM.

A bundle is ``LITERTLM`` + version + a flatbuffer header listing sections (a TFLite model, a
tokenizer, an ``LlmMetadata`` proto, ...) at 16 KiB-aligned byte ranges. pocketlm's engine
runs a bundle's TFLite section when that model is a pocketlm contract file (it carries its
own tokenizer and metadata); the section is copied once into pocketlm's cache folder, so the
rest of pocketlm (inspection, validation, LiteRT's ``from_file``) sees a plain ``.tflite``.
The header is read here with ``flatbuffers`` directly (field slots from LiteRT-LM's
``litertlm_header_schema.fbs``), so the runtime does not need ``litert-lm-builder``.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from flatbuffers import number_types as N
from flatbuffers.table import Table

from ..config import cache_root
from ..errors import ModelFileError
from ..paths import atomic_write

MAGIC = b"LITERTLM"
HEADER_BEGIN = 32  # the header flatbuffer starts here; its end offset is at byte 24
# AnySectionDataType values (litertlm_header_schema.fbs)
TFLITE_MODEL, SP_TOKENIZER, LLM_METADATA, HF_TOKENIZER_ZLIB = 3, 4, 5, 6
SECTION_NAMES = {1: "generic data", 3: "TFLite model", 4: "SentencePiece tokenizer",
                 5: "LlmMetadata", 6: "HF tokenizer", 7: "TFLite weights",
                 8: "embedding metadata", 9: "executor metadata"}


@dataclass(frozen=True)
class Section:
    data_type: int
    begin: int
    end: int

    @property
    def name(self) -> str:
        return SECTION_NAMES.get(self.data_type, f"section type {self.data_type}")


def is_bundle(path: Path) -> bool:
    """True when ``path`` starts with LiteRT-LM's magic bytes."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_sections(path: Path) -> list[Section]:
    """The sections of a ``.litertlm`` file. Raises :class:`ModelFileError` (one line) when
    the header is truncated or points outside the file."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(HEADER_BEGIN)
        if len(head) < HEADER_BEGIN or not head.startswith(MAGIC):
            raise ModelFileError(f"{path} is not a .litertlm bundle (no LITERTLM header)")
        (end,) = struct.unpack_from("<Q", head, 24)
        if not HEADER_BEGIN < end <= min(size, 64 << 20):
            raise ModelFileError(f"{path}: the .litertlm header is truncated or corrupt")
        buf = bytearray(f.read(end - HEADER_BEGIN))
    try:
        root = Table(buf, N.UOffsetTFlags.py_type(struct.unpack_from("<I", buf, 0)[0]))
        meta = _child(root, 6)  # LiteRTLMMetaData.section_metadata
        sections = []
        if meta is not None:
            o = meta.Offset(4)  # SectionMetadata.objects
            count = meta.VectorLen(o) if o else 0
            start = meta.Vector(o) if o else 0
            for j in range(count):
                obj = Table(buf, meta.Indirect(start + 4 * j))
                sections.append(Section(_scalar(obj, 10, N.Uint8Flags),
                                        _scalar(obj, 6, N.Uint64Flags),
                                        _scalar(obj, 8, N.Uint64Flags)))
    except (struct.error, IndexError, ValueError, TypeError):
        raise ModelFileError(f"{path}: the .litertlm header is corrupt") from None
    if any(not 0 < s.begin <= s.end <= size for s in sections):
        raise ModelFileError(f"{path}: a .litertlm section lies outside the file (truncated?)")
    return sections


def _child(table: Table, slot: int) -> Table | None:
    o = table.Offset(slot)
    return Table(table.Bytes, table.Indirect(o + table.Pos)) if o else None


def _scalar(table: Table, slot: int, flags) -> int:
    o = table.Offset(slot)
    return int(table.Get(flags, o + table.Pos)) if o else 0


def read_section(path: Path, section: Section) -> bytes:
    with open(path, "rb") as f:
        f.seek(section.begin)
        return f.read(section.end - section.begin)


def tflite_path(path: Path) -> Path:
    """A ``.tflite`` holding the bundle's one TFLite model, copied into pocketlm's cache
    folder once per bundle version (size and mtime in the name). Raises
    :class:`ModelFileError` when the bundle has no TFLite model, or several (vision, audio,
    embedder parts: a layout only LiteRT-LM runs)."""
    sections = read_sections(path)
    models = [s for s in sections if s.data_type == TFLITE_MODEL]
    if len(models) != 1:
        kinds = ", ".join(s.name for s in sections) or "no sections"
        raise ModelFileError(f"{path} is a .litertlm bundle that pocketlm's engine cannot run "
                             f"(it has {kinds}; pocketlm runs one TFLite model): use "
                             "--engine litert-lm")
    st = path.stat()
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    folder = cache_root() / "litertlm" / where
    out = folder / f"{path.stem[:40]}-{st.st_size}-{st.st_mtime_ns}.tflite"
    if out.is_file() and out.stat().st_size == models[0].end - models[0].begin:
        return out
    begin, left = models[0].begin, models[0].end - models[0].begin

    def copy(dst) -> None:
        with open(path, "rb") as src:
            src.seek(begin)
            todo = left
            while todo:
                chunk = src.read(min(todo, 8 << 20))
                if not chunk:
                    raise ModelFileError(f"{path} is truncated")
                dst.write(chunk)
                todo -= len(chunk)

    try:
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.tflite"):
            if old.name != out.name:  # another process (a server's worker) may be writing it
                old.unlink(missing_ok=True)  # the model of an older version of the bundle
        atomic_write(out, copy)  # synced, and its large page-cache folios dropped (paths.py)
    except OSError as exc:
        raise ModelFileError(f"cannot unpack {path} into {folder}: {exc.strerror or exc}"
                             ) from None
    return out
