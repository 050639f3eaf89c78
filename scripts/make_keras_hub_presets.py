"""Write src/pocketlm/presets/keras_hub.json: every KerasHub causal LM preset and its task
class, so `pocketlm convert --preset NAME` checks a name (and refuses an unsupported family)
in milliseconds, without importing Keras. tests/test_cli.py keeps it equal to keras_hub's.

    .venv/bin/python scripts/make_keras_hub_presets.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def keras_hub_presets() -> dict[str, str]:
    import keras_hub

    found: dict[str, type] = {}
    todo = [keras_hub.models.CausalLM]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        for name in getattr(cls, "presets", {}) or {}:
            # A subclass lists its parent's presets too: the most derived class owns a name.
            if name not in found or len(cls.__mro__) > len(found[name].__mro__):
                found[name] = cls
    found = {k: v.__name__ for k, v in found.items()}
    return dict(sorted(found.items()))


if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "src/pocketlm/presets/keras_hub.json"
    out.write_text(json.dumps(keras_hub_presets(), indent=1) + "\n")
    print(f"wrote {out}")
