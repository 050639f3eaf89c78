"""The models the server may run: the compatible ``.tflite`` files and ``.litertlm`` bundles
of one directory.

A bundle runs in pocketlm's engine through its one TFLite model when pocketlm made it (the
model carries pocketlm's contract; :mod:`pocketlm.runtime.bundle`); any other bundle is
listed as not compatible, with why.

Model ids are plain file names inside that directory. A request can only name an id that a
scan found, and a scan only keeps files whose real path (symlinks resolved) stays inside
the directory, so no request can make the server open a file elsewhere.
"""

from __future__ import annotations

import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..chat_template import PLAIN
from ..contract import TOKENIZER_METADATA_KEY, ContractInfo
from ..errors import PocketLMError
from ..runtime.kvcache import KVCacheModel
from ..runtime.loader import inspect_model
from ..tokenizers import Tokenizer, tokenizer_from_bytes

MODEL_SUFFIXES = (".tflite", ".litertlm")  # the files a scan lists, in this order of preference


@dataclass
class ModelEntry:
    """One model file (``.tflite`` or ``.litertlm``) of the models directory, compatible
    or not."""

    id: str
    path: Path
    size_bytes: int
    mtime: float
    compatible: bool
    reason: str = ""  # why it is not compatible
    contract: ContractInfo | None = None
    tokenizer_blob: bytes | None = None

    def describe(self) -> dict[str, Any]:
        """What the picker and the API show (never the absolute path)."""
        out: dict[str, Any] = {"id": self.id, "size_bytes": self.size_bytes,
                               "compatible": self.compatible}
        if self.contract is not None:
            c = self.contract
            out.update(contract=f"{c.contract} v{c.contract_version}",
                       quantization=c.quantization, sequence_length=c.sequence_length,
                       layers=c.model.get("num_layers"), source=c.source,
                       model_type=c.model_type, chat_template=self.chat_template_name())
        if not self.compatible:
            out["reason"] = self.reason
        return out

    def chat_template_name(self) -> str | None:
        """The name of the chat template the model chats with (``"chatml"``, ``"gemma"``),
        or None when it has none (the plain fallback) or its stored one is not valid: the
        page picks its chat mode by this."""
        from ..runtime.chat import chat_template_for

        try:
            template, _ = chat_template_for(self)
        except PocketLMError:
            return None
        return None if template is PLAIN else template.name


class ModelCatalog:
    """Scans a directory (on demand, cheaply: files are inspected again only if changed)."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root is not None else None
        self._entries: dict[str, ModelEntry] = {}
        self._tokenizers: dict[tuple[str, float], Tokenizer] = {}
        self._lock = threading.Lock()

    def scan(self) -> list[ModelEntry]:
        """Every ``.tflite`` and ``.litertlm`` directly in the directory, sorted by name."""
        if self.root is None or not self.root.is_dir():
            return []
        with self._lock:
            found: dict[str, ModelEntry] = {}
            for path in sorted(self.root.iterdir()):
                if path.suffix not in MODEL_SUFFIXES or not self._inside(path):
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if not path.is_file():
                    continue
                old = self._entries.get(path.name)
                if old is not None and (old.mtime, old.size_bytes) == (stat.st_mtime,
                                                                      stat.st_size):
                    found[path.name] = old
                else:
                    found[path.name] = self._inspect(path, stat.st_size, stat.st_mtime)
            self._entries = found
            return list(found.values())

    def find(self, name: str) -> ModelEntry | None:
        """The entry called ``name``, or, for a name without a model suffix (``tiny``, as
        llama.cpp-style clients send), ``name.tflite`` or else ``name.litertlm``; None if
        there is none."""
        entry = self.get(name)
        if entry is None and not name.endswith(MODEL_SUFFIXES):
            for suffix in MODEL_SUFFIXES:
                entry = self.get(name + suffix)
                if entry is not None:
                    break
        return entry

    def get(self, model_id: str) -> ModelEntry | None:
        """The entry called ``model_id``, or None. Never resolves arbitrary paths."""
        if not model_id or "/" in model_id or "\\" in model_id or model_id.startswith("."):
            return None
        entry = self._entries.get(model_id)
        if entry is None or not self._unchanged(entry):
            # New, or changed since the last scan (replaced by a link out of the directory,
            # say): scan again rather than hand out a path that now leads elsewhere.
            entry = next((e for e in self.scan() if e.id == model_id), None)
        return entry

    def tokenizer(self, entry: ModelEntry) -> Tokenizer:
        """The model's own tokenizer (read from its metadata), cached per file version."""
        key = (entry.id, entry.mtime)
        with self._lock:
            tok = self._tokenizers.get(key)
        if tok is None:
            if entry.tokenizer_blob is None:
                raise PocketLMError(f"{entry.id} carries no tokenizer")
            tok = tokenizer_from_bytes(entry.tokenizer_blob)
            with self._lock:
                self._tokenizers = {k: v for k, v in self._tokenizers.items()
                                    if k[0] != entry.id}
                self._tokenizers[key] = tok
        return tok

    # -- internals ------------------------------------------------------------------------
    def _inside(self, path: Path) -> bool:
        assert self.root is not None
        try:
            return path.resolve().is_relative_to(self.root)
        except (OSError, RuntimeError):  # Python 3.11 reports a symlink loop as RuntimeError
            return False

    def _unchanged(self, entry: ModelEntry) -> bool:
        """Whether the file is still the regular file, inside the directory, that was
        scanned (a few system calls: checked on every request)."""
        try:
            st = entry.path.stat()
        except OSError:
            return False
        return (stat.S_ISREG(st.st_mode) and (st.st_mtime, st.st_size) == (entry.mtime,
                                                                          entry.size_bytes)
                and self._inside(entry.path))

    @staticmethod
    def _inspect(path: Path, size: int, mtime: float) -> ModelEntry:
        entry = ModelEntry(path.name, path, size, mtime, compatible=False)
        try:
            found = inspect_model(path)
        except PocketLMError as exc:
            entry.reason = _reason(str(exc), path)
            return entry
        except Exception as exc:  # a corrupt flatbuffer can fail in many ways
            entry.reason = f"cannot read it: {type(exc).__name__}"
            return entry
        entry.contract = found.contract
        if found.kind != KVCacheModel.kind:
            entry.reason = (f"the app runs pocketlm.kv-cache models; this is {found.kind}: "
                            f"{found.describe_signatures()[:300]}")
            return entry
        entry.tokenizer_blob = found.summary.metadata.get(TOKENIZER_METADATA_KEY)
        if entry.tokenizer_blob is None:
            entry.reason = ("it carries no tokenizer" if found.bundle is None else
                            "its model carries no pocketlm tokenizer and the bundle no "
                            "SentencePiece one (pocketlm does not read a bundle's HF "
                            "tokenizer)")
            return entry
        entry.compatible = True
        return entry


# What the runtime says to a CLI user of a bundle it cannot run ("use --engine litert-lm") is
# no advice for the app, which has one engine: say where such a bundle does run instead.
_CLI_ADVICE = "use --engine litert-lm"
_APP_ADVICE = ("the app runs bundles pocketlm made; `pocketlm generate FILE --engine "
               "litert-lm` runs others")


def _reason(message: str, path: Path) -> str:
    """One line on why ``path`` cannot be served, from the error the runtime raised: the
    path becomes "it" (the client never sees server paths), CLI advice becomes the app's."""
    message = message.strip().splitlines()[0] if message.strip() else "cannot read it"
    message = message.replace(str(path), "it")
    return message.replace(_CLI_ADVICE, _APP_ADVICE)
