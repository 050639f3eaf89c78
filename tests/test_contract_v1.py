"""Files of contract version 1 (written before LiteRT-LM support) still run.

``tests/data/tiny-{gpt2,llama}-v1.tflite`` were converted by pocketlm at the last v1 commit
(tiny random models, dynamic-int8, cache 32, chunks 8 and 4: the ``last_index`` input,
``input_pos [1]``, logits ``[1, V]``, Llama's cache ``[1, S, kv_heads, D]``); ``tiny-v1.json``
holds what that pocketlm's runtime generated and scored with them. Today's runtime must give
the same tokens, through the v1 path (two swapped cache buffer sets). No TensorFlow needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pocketlm.config import GenerationConfig
from pocketlm.runtime import complete, load_model

DATA = Path(__file__).parent / "data"
RECORDED = json.loads((DATA / "tiny-v1.json").read_text())


@pytest.mark.parametrize("family", sorted(RECORDED))
def test_version_1_files_generate_and_score_as_before(family):
    want = RECORDED[family]
    model = load_model(DATA / f"tiny-{family}-v1.tflite", num_threads=1)
    assert model.info.contract_version == 1 and not model.in_place
    done = complete(model, want["prompt"], GenerationConfig(max_new_tokens=12,
                                                            stop_at_end_token=False))
    assert done.prompt.fed_ids == want["fed_ids"]
    assert done.token_ids == want["token_ids"]
    scored = model.score(want["fed_ids"]).argmax(-1)
    assert [int(x) for x in scored] == want["score_argmax"]
    # start() after score() and another start(): the cache state does not leak between them
    first = np.asarray(model.start(want["fed_ids"]))
    assert int(first.argmax()) == want["token_ids"][0]
