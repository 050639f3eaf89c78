"""Train a small causal LM (KerasHub GPT-2 or Llama) from scratch on a text file.

``--family gpt2`` (default): GPT2Backbone with the real GPT-2 tokenizer. This is how the
embedded ``pocketlm_gpt2_shakespeare`` preset was made:

    python -m pocketlm.train --data ../shared/data/tinyshakespeare.txt \
        --out src/pocketlm/presets/pocketlm_gpt2_shakespeare --minutes 75 --seed 0

``--family llama``: LlamaBackbone (RoPE, GQA, RMSNorm, SwiGLU) with a SentencePiece tokenizer
trained on the training part of the text (:mod:`pocketlm.train_llama`); every window starts
with ``<s>``, as KerasHub's generate feeds it. The exact command is in that preset's model card.

The last 10% of the text is held out for validation (:func:`pocketlm.textdata.split_holdout`);
the weights with the best validation loss are kept. A model card (README.md) and
``training.json`` with the numbers are written beside the preset.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .config import ModelConfig
from .errors import PocketLMError
from .textdata import read_text, split_holdout
from .tokenizer import BPETokenizer


@dataclass
class TrainConfig:
    data: str
    out: str
    family: str = "gpt2"  # "gpt2" or "llama"
    num_layers: int = 4
    num_heads: int = 3  # query heads for llama
    num_key_value_heads: int = 2  # llama only (grouped-query attention)
    vocabulary_size: int = 4096  # llama only: size of the SentencePiece model trained here
    rope_max_wavelength: int = 10000  # llama only
    hidden_dim: int = 192
    intermediate_dim: int = 768
    max_sequence_length: int = 256
    dropout: float = 0.1
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    max_steps: int = 4000
    minutes: float = 75.0  # wall-clock budget; training stops early when it is spent
    eval_every: int = 100
    holdout_fraction: float = 0.1
    seed: int = 0


def _windows(tokens: np.ndarray, length: int, count: int, rng: np.random.Generator,
             bos: int | None = None) -> np.ndarray:
    """``count`` random windows, int32 [count, length + 1]: inputs are [:, :-1], targets [:, 1:].

    With ``bos`` each window is ``bos`` + ``length`` text tokens, so the model learns to start
    from the start token the way generate() feeds it.
    """
    take = length + 1 if bos is None else length
    starts = rng.integers(0, len(tokens) - take, size=count)
    batch = np.stack([tokens[s:s + take] for s in starts])
    return batch if bos is None else _prepend(batch, bos)


def _val_batches(tokens: np.ndarray, length: int, bos: int | None = None) -> np.ndarray:
    """Consecutive, non-overlapping windows over all of ``tokens`` (same layout as _windows)."""
    take = length + 1 if bos is None else length
    n = (len(tokens) - 1) // length
    batch = np.stack([tokens[i * length:i * length + take] for i in range(n)])
    return batch if bos is None else _prepend(batch, bos)


def _prepend(batch: np.ndarray, token: int) -> np.ndarray:
    return np.concatenate([np.full((len(batch), 1), token, batch.dtype), batch], axis=1)


def _model_and_tokenizer(cfg: TrainConfig, train_text: str):
    """(causal LM with preprocessor, encode(str) -> ids, decode(ids) -> str, bos id or None)."""
    if cfg.family == "llama":
        import sentencepiece as spm

        from .train_llama import BOS_ID, build_llama, train_sentencepiece

        proto = train_sentencepiece(train_text, cfg.vocabulary_size)
        sp = spm.SentencePieceProcessor(model_proto=proto)
        return build_llama(cfg, proto), sp.encode, sp.decode, BOS_ID
    if cfg.family != "gpt2":
        raise PocketLMError(f"unknown family {cfg.family!r} (expected 'gpt2' or 'llama')")
    from .authoring import random_causal_lm

    tok = BPETokenizer.gpt2()
    model_cfg = ModelConfig(num_layers=cfg.num_layers, num_heads=cfg.num_heads,
                            hidden_dim=cfg.hidden_dim, intermediate_dim=cfg.intermediate_dim,
                            max_sequence_length=cfg.max_sequence_length, dropout=cfg.dropout)
    authored = random_causal_lm(model_cfg, sequence_length=cfg.max_sequence_length, seed=cfg.seed)
    return authored.causal_lm, tok.encode, tok.decode, None


def _save(lm, preprocessor, out: Path, report: dict) -> None:
    """Write the preset and training.json (called at each new best, so a usable preset
    exists whenever the run stops)."""
    lm.preprocessor = preprocessor
    try:
        out.mkdir(parents=True, exist_ok=True)
        lm.save_to_preset(str(out))
        (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
        write_model_card(out, report)
    finally:
        lm.preprocessor = None


def train(cfg: TrainConfig) -> dict:
    import keras

    t0 = time.time()
    text = read_text(cfg.data)
    train_text, val_text = split_holdout(text, cfg.holdout_fraction)
    lm, encode, decode, bos = _model_and_tokenizer(cfg, train_text)
    train_ids = np.asarray(encode(train_text), dtype=np.int32)
    val_ids = np.asarray(encode(val_text), dtype=np.int32)
    print(f"tokens: train {len(train_ids):,}, validation {len(val_ids):,} "
          f"(tokenized in {time.time() - t0:.1f}s)", flush=True)

    preprocessor = lm.preprocessor
    lm.preprocessor = None  # we feed token ids directly
    params = lm.backbone.count_params()
    print(f"model: {params:,} parameters ({params * 4 / 2**20:.1f} MiB float32)", flush=True)

    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps, decay_steps=max(1, cfg.max_steps - cfg.warmup_steps),
        alpha=0.1)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay,
                                       beta_2=0.98, clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "scale"])
    lm.compile(optimizer=optimizer,
               loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
               jit_compile=False)

    rng = np.random.default_rng(cfg.seed)
    length = cfg.max_sequence_length
    val = _val_batches(val_ids, length, bos)
    out = Path(cfg.out)
    report = {"config": asdict(cfg), "parameters": int(params),
              "train_tokens": int(len(train_ids)), "val_tokens": int(len(val_ids)),
              "train_chars": len(train_text), "val_chars": len(val_text)}
    val_x = {"token_ids": val[:, :-1], "padding_mask": np.ones_like(val[:, :-1], dtype=bool)}
    history, best = [], (math.inf, None, 0)
    step, deadline = 0, t0 + cfg.minutes * 60
    while step < cfg.max_steps and time.time() < deadline:
        chunk = min(cfg.eval_every, cfg.max_steps - step)
        batch = _windows(train_ids, length, chunk * cfg.batch_size, rng, bos)
        x = {"token_ids": batch[:, :-1], "padding_mask": np.ones_like(batch[:, :-1], dtype=bool)}
        fit = lm.fit(x, batch[:, 1:], batch_size=cfg.batch_size, epochs=1, shuffle=False,
                     verbose=0)
        step += chunk
        train_loss = float(fit.history["loss"][-1])
        val_loss = lm.evaluate(val_x, val[:, 1:], batch_size=32, verbose=0, return_dict=True)
        val_loss = float(val_loss["loss"])
        elapsed = time.time() - t0
        history.append({"step": step, "train_loss": train_loss, "val_loss": val_loss,
                        "minutes": round(elapsed / 60, 2)})
        mark = ""
        if val_loss < best[0]:
            best = (val_loss, lm.backbone.get_weights(), step)
            mark = " *"
            if cfg.family != "gpt2":  # the GPT-2 preset was made saving at the end only
                _save(lm, preprocessor, out, {**report, **_summary(best, step, history, t0)})
        print(f"step {step:5d}/{cfg.max_steps}  train {train_loss:.3f}  val {val_loss:.3f} "
              f"(ppl {math.exp(val_loss):.1f})  {elapsed / 60:.1f} min{mark}", flush=True)

    lm.backbone.set_weights(best[1])
    report.update(_summary(best, step, history, t0))
    _save(lm, preprocessor, out, report)
    lm.preprocessor = preprocessor
    if cfg.family == "llama":
        from .train_llama import samples

        report.update(samples(lm, seed=cfg.seed))
    else:
        report["greedy_samples"] = {
            p: decode(encode(p) + _greedy(lm, encode(p), 40))
            for p in ["I'm enjoying a", "ROMEO:", "To be, or not"]}
    (out / "training.json").write_text(json.dumps(report, indent=2) + "\n")
    write_model_card(out, report)
    print(f"done: best validation loss {best[0]:.3f} (perplexity {math.exp(best[0]):.1f}) "
          f"at step {best[2]}, {report['minutes']} min; preset in {out}", flush=True)
    return report


def _summary(best: tuple, step: int, history: list, t0: float) -> dict:
    return {"best_step": best[2], "steps_run": step, "best_val_loss": best[0],
            "best_val_perplexity": math.exp(best[0]),
            "final_train_loss": history[-1]["train_loss"] if history else None,
            "minutes": round((time.time() - t0) / 60, 1), "history": history}


def write_model_card(out: Path, report: dict) -> None:
    """README.md beside the preset: what the model is, how it was made, how good it is."""
    if report["config"].get("family", "gpt2") == "llama":
        from .train_llama import write_llama_card

        return write_llama_card(out, report)
    cfg = report["config"]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != "README.md")
    hist = report["history"]
    rows = "\n".join(f"| {h['step']} | {h['train_loss']:.3f} | {h['val_loss']:.3f} | "
                     f"{math.exp(h['val_loss']):.1f} | {h['minutes']} |" for h in hist)
    samples = "\n\n".join(f"Prompt {p!r}:\n\n```text\n{t.strip()}\n```"
                          for p, t in report.get("greedy_samples", {}).items())
    stopped_note = ""
    if report["steps_run"] < cfg["max_steps"]:
        stopped_note = (f" This run was stopped by the time budget at step {report['steps_run']}"
                        f" (the learning-rate schedule was planned for {cfg['max_steps']}), so a "
                        "rerun on a faster or quieter machine trains longer and ends elsewhere.")
    text = f"""# pocketlm_gpt2_shakespeare

A small GPT-2 (KerasHub `GPT2Backbone`, the real 50,257-token GPT-2 tokenizer) trained from
scratch on Tiny Shakespeare, shipped inside pocketlm so that the main job works offline.
It writes Shakespeare-flavoured text; it knows nothing else.

| | |
|---|---|
| parameters | {report['parameters']:,} ({cfg['num_layers']} layers, {cfg['num_heads']} heads, hidden {cfg['hidden_dim']}, MLP {cfg['intermediate_dim']}, {cfg['max_sequence_length']} positions) |
| preset size | {size / 2**20:.1f} MiB (float32 weights + tokenizer) |
| data | `tinyshakespeare.txt`: first 90% for training ({report['train_tokens']:,} tokens), last 10% held out ({report['val_tokens']:,} tokens) |
| training | {report['steps_run']} steps of {cfg['batch_size']} x {cfg['max_sequence_length']} tokens, AdamW (lr {cfg['learning_rate']}, warm-up {cfg['warmup_steps']}, cosine), weight decay {cfg['weight_decay']}, dropout {cfg['dropout']}, seed {cfg['seed']} |
| time | {report['minutes']} min on 2 CPU cores (sharing them with other work) |
| kept weights | step {report['best_step']}: validation loss {report['best_val_loss']:.3f} (perplexity {report['best_val_perplexity']:.1f}) |

Reproduce (the data is read from where it lies, never copied into the project):

```bash
python -m pocketlm.train --data ../shared/data/tinyshakespeare.txt \\
    --out src/pocketlm/presets/pocketlm_gpt2_shakespeare --max-steps {cfg['max_steps']} \\
    --minutes {cfg['minutes']:g} --eval-every {cfg['eval_every']} --weight-decay {cfg['weight_decay']} --seed {cfg['seed']}
```

The run stops at `--max-steps` or when `--minutes` are spent, whichever comes first, and keeps
the weights with the best validation loss.{stopped_note}

## Loss

| step | train loss | validation loss | validation perplexity | minutes |
|---:|---:|---:|---:|---:|
{rows}

## Greedy samples (Keras float model, 40 new tokens)

{samples}
"""
    (out / "README.md").write_text(text)


def _greedy(lm, ids: list[int], n: int) -> list[int]:
    """Greedy continuation with the Keras model itself (no cache; fine for a sample)."""
    seq = list(ids)
    length = lm.backbone.max_sequence_length
    for _ in range(n):
        window = np.asarray([seq[-length:]], dtype=np.int32)
        logits = lm({"token_ids": window, "padding_mask": np.ones_like(window, bool)})
        seq.append(int(np.argmax(np.asarray(logits)[0, -1])))
    return seq[len(ids):]


# Each setting's value type: whole numbers and finite numbers in range (argparse turns a bad
# value into one line and exit code 2 before TensorFlow is imported).
def _setting_types() -> dict:
    from .cli.args import SEED_MAX, integer, number
    return {
        "num_layers": integer(1, 1000), "num_heads": integer(1, 1024),
        "hidden_dim": integer(1, 1 << 16), "intermediate_dim": integer(1, 1 << 18),
        "max_sequence_length": integer(2, 1 << 16), "dropout": number(0, 1, hi_open=True),
        "batch_size": integer(1, 1 << 16), "learning_rate": number(0, 10, lo_open=True),
        "weight_decay": number(0, 10), "warmup_steps": integer(0),
        "max_steps": integer(1), "minutes": number(0, None, lo_open=True),
        "eval_every": integer(1), "holdout_fraction": number(0, 1, lo_open=True, hi_open=True),
        "seed": integer(0, SEED_MAX),
        # llama only
        "num_key_value_heads": integer(1, 1024), "vocabulary_size": integer(300, 1 << 20),
        "rope_max_wavelength": integer(1),
    }


def build_parser():
    """The ``python -m pocketlm.train`` parser: every TrainConfig field is an option."""
    from .cli.args import HelpFormatter, Parser

    parser = Parser(prog="python -m pocketlm.train", description=__doc__.splitlines()[0],
                    formatter_class=HelpFormatter)
    defaults = TrainConfig(data="", out="")
    types = _setting_types()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if name == "data":
            parser.add_argument(flag, required=True, help="a UTF-8 text file to train on")
        elif name == "out":
            parser.add_argument(flag, required=True, help="the preset directory to write")
        elif name == "family":
            parser.add_argument(flag, choices=["gpt2", "llama"], default=value,
                                help="gpt2 (the GPT-2 tokenizer) or llama (a SentencePiece "
                                     "tokenizer trained on the training part)")
        else:
            parser.add_argument(flag, type=types[name], default=value,
                                help=name.replace("_", " "))
    parser.add_argument("--card-only", action="store_true",
                        help="only rewrite README.md from the preset's training.json")
    return parser


def main(argv: list[str] | None = None) -> int:
    from .errors import PocketLMError
    from .paths import check_input_file, check_output_dir

    args = build_parser().parse_args(argv)
    try:
        if args.card_only:
            out = Path(args.out)
            check_input_file(out / "training.json", "training record")
            write_model_card(out, json.loads((out / "training.json").read_text()))
            return 0
        check_input_file(args.data)
        check_output_dir(args.out)
        params = vars(args)
        params.pop("card_only")
        train(TrainConfig(**params))
    except PocketLMError as exc:
        print(f"pocketlm: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
