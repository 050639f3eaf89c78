"""Conversion faults: no half-written files, clear errors for what the user can fix."""

from __future__ import annotations

import errno
import json
import shutil

import pytest

from pocketlm.config import ExportConfig
from pocketlm.errors import ConversionError, PresetError

from .conftest import TINY_PREFILL, TINY_SEQ, needs_convert

pytestmark = needs_convert
CFG = ExportConfig(sequence_length=TINY_SEQ, prefill_lengths=TINY_PREFILL)


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_interrupted_write_leaves_nothing(tiny_authored, tmp_path, monkeypatch):
    import pocketlm.export as ex

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ex.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.export(tiny_authored, tmp_path / "m.tflite", CFG, progress=lambda m: None)
    assert leftovers(tmp_path) == []


def test_disk_full_while_writing(tiny_authored, tmp_path, monkeypatch):
    import pocketlm.export as ex

    real_fdopen = ex.os.fdopen

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ex.os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(ConversionError, match="No space left on device"):
        ex.export(tiny_authored, tmp_path / "m.tflite", CFG, progress=lambda m: None)
    assert leftovers(tmp_path) == []


def test_too_little_disk_is_refused_before_converting(tiny_authored, tmp_path, monkeypatch):
    import pocketlm.export as ex

    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(1, 1, 1024))
    with pytest.raises(ConversionError, match="not enough disk space"):
        ex.export(tiny_authored, tmp_path / "m.tflite", CFG, progress=lambda m: None)


def test_too_little_memory_is_refused_before_converting(tiny_authored, tmp_path, monkeypatch):
    import pocketlm.export as ex

    monkeypatch.delenv("POCKETLM_IGNORE_MEMORY", raising=False)
    monkeypatch.setattr(ex, "available_memory_bytes", lambda: 1 << 20)
    with pytest.raises(ConversionError, match="not enough memory"):
        ex.export(tiny_authored, tmp_path / "m.tflite", CFG, progress=lambda m: None)


@pytest.fixture(scope="module")
def tiny_preset(tiny_authored, tmp_path_factory):
    path = tmp_path_factory.mktemp("preset") / "tiny_gpt2"
    tiny_authored.causal_lm.save_to_preset(str(path))
    return path


def test_local_preset_directory_round_trip(tiny_preset, tiny_authored):
    from pocketlm.authoring import load_causal_lm

    again = load_causal_lm(tiny_preset, TINY_SEQ)
    assert again.config == tiny_authored.config


def test_unreadable_preset(tiny_preset, tmp_path):
    from pocketlm.authoring import load_causal_lm

    broken = tmp_path / "broken"
    shutil.copytree(tiny_preset, broken)
    (broken / "model.weights.h5").write_bytes(b"not an h5 file")
    with pytest.raises(PresetError, match="cannot load preset"):
        load_causal_lm(broken)
    (broken / "config.json").write_text("{ not json")
    with pytest.raises(PresetError, match="cannot load preset"):
        load_causal_lm(broken)


def test_unsupported_architecture(tiny_preset, tmp_path):
    """A family pocketlm refuses is refused from the preset's task.json, with the reason,
    before any weights load; an encoder-decoder likewise."""
    import shutil

    from pocketlm.authoring import load_causal_lm
    from pocketlm.errors import UnsupportedModelError

    for task, reason in (("RWKV7CausalLM", "RWKV-7 is a recurrent model"),
                         ("BartSeq2SeqLM", "is an encoder-decoder model"),
                         ("PaliGemmaCausalLM", "vision-language model")):
        path = tmp_path / task
        shutil.copytree(tiny_preset, path)
        spec = json.loads((path / "task.json").read_text())
        spec["class_name"] = task
        (path / "task.json").write_text(json.dumps(spec))
        (path / "model.weights.h5").write_bytes(b"not weights")  # never read
        with pytest.raises(UnsupportedModelError, match=reason):
            load_causal_lm(path, 16)


def test_a_family_besides_gpt2_loads_from_its_preset(tmp_path):
    """OPT, once refused, is a supported family: its saved preset loads as one."""
    from pocketlm.authoring import load_causal_lm
    from pocketlm.tiny import tiny_causal_lm

    authored = tiny_causal_lm("opt", sequence_length=16)
    authored.causal_lm.save_to_preset(str(tmp_path / "tiny_opt"))
    again = load_causal_lm(tmp_path / "tiny_opt", 16)
    assert again.family.name == "opt" and again.backbone_config == authored.backbone_config
    assert again.start_token_id == authored.start_token_id is not None
