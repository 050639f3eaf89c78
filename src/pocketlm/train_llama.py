"""The Llama family for :mod:`pocketlm.train`: a SentencePiece tokenizer trained here, the model.

The embedded ``pocketlm_llama_shakespeare`` preset is a KerasHub ``LlamaCausalLM`` (RoPE,
grouped-query attention, RMSNorm, SwiGLU) whose SentencePiece BPE tokenizer is trained on the
training part of the text only, so the held-out part stays unseen by every learned piece.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the train module owns the settings; this one only reads them
    from .train import TrainConfig

# Ids as KerasHub's LlamaTokenizer wants them: it pads with id 0 and requires "<s>" and "</s>".
# So "<pad>" is 0 (the padding it writes is a real pad piece), "<s>" 1, "</s>" 2, "<unk>" 3.
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
# The trainer reads one sentence per line and never sees "\n"; a user-defined piece keeps the
# line structure of verse exact through encode/decode.
NEWLINE_PIECE = "\n"


def train_sentencepiece(train_text: str, vocab_size: int) -> bytes:
    """Train a byte-fallback SentencePiece BPE model on ``train_text``; return the proto bytes.

    Deterministic: one thread, lines in file order, no sampling of the input. Normalization is
    "identity" and whitespace is kept as written (no dummy prefix, no collapsing), so
    ``decode(encode(text)) == text`` for any UTF-8 text (bytes outside the pieces fall back to
    ``<0xNN>`` pieces).
    """
    import sentencepiece as spm

    proto = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(train_text.split("\n")), model_writer=proto,
        model_type="bpe", vocab_size=vocab_size, byte_fallback=True, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, split_digits=True, user_defined_symbols=[NEWLINE_PIECE],
        pad_id=PAD_ID, bos_id=BOS_ID, eos_id=EOS_ID, unk_id=UNK_ID,
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
    return proto.getvalue()


def build_llama(cfg: "TrainConfig", proto: bytes):
    """A randomly initialised ``keras_hub.models.LlamaCausalLM`` with its preprocessor.

    ``tie_word_embeddings`` stays False: keras-hub 0.32's ``LlamaBackbone.get_config`` omits it,
    so a tied preset would reload untied and fail to load its weights.
    """
    import keras
    import keras_hub

    keras.utils.set_random_seed(cfg.seed)
    tokenizer = keras_hub.models.LlamaTokenizer(proto=proto)
    if tokenizer.vocabulary_size() != cfg.vocabulary_size:
        raise ValueError(f"tokenizer has {tokenizer.vocabulary_size()} pieces, "
                         f"expected {cfg.vocabulary_size}")
    backbone = keras_hub.models.LlamaBackbone(
        vocabulary_size=cfg.vocabulary_size, num_layers=cfg.num_layers,
        num_query_heads=cfg.num_heads, num_key_value_heads=cfg.num_key_value_heads,
        hidden_dim=cfg.hidden_dim, intermediate_dim=cfg.intermediate_dim,
        rope_max_wavelength=cfg.rope_max_wavelength, layer_norm_epsilon=1e-6,
        dropout=cfg.dropout, tie_word_embeddings=False, dtype="float32")
    preprocessor = keras_hub.models.LlamaCausalLMPreprocessor(
        tokenizer, sequence_length=cfg.max_sequence_length)
    return keras_hub.models.LlamaCausalLM(backbone=backbone, preprocessor=preprocessor)


PROMPTS = ["ROMEO:", "To be, or not", "I'm enjoying a"]


def samples(lm, seed: int = 0, max_length: int = 64) -> dict:
    """Continuations from Keras ``generate``: greedy, and top-k (k=40) sampled with ``seed``.

    ``max_length`` counts tokens including ``<s>`` and the prompt.
    """
    import keras_hub

    out = {}
    for name, sampler in [("greedy_samples", "greedy"),
                          ("sampled_samples", keras_hub.samplers.TopKSampler(k=40, seed=seed))]:
        lm.compile(sampler=sampler)
        out[name] = {p: lm.generate(p, max_length=max_length) for p in PROMPTS}
    out["sampler_settings"] = {"greedy": "argmax", "sampled": f"top-k 40, seed {seed}",
                               "max_length_tokens": max_length}
    return out


def reproduce_command(cfg: dict) -> str:
    """The exact ``python -m pocketlm.train`` command for a training.json ``config``."""
    lines = [""]
    for k, v in cfg.items():
        if k in ("data", "out"):
            continue
        flag = f"--{k.replace('_', '-')} {v}"
        if len(lines[-1]) + len(flag) > 84:
            lines.append("")
        lines[-1] = f"{lines[-1]} {flag}".strip()
    return " \\\n    ".join(["python -m pocketlm.train --data ../shared/data/tinyshakespeare.txt",
                              "--out src/pocketlm/presets/pocketlm_llama_shakespeare", *lines])


def write_llama_card(out: Path, report: dict) -> None:
    """README.md beside the Llama preset: what it is, how it was made, how good it is."""
    cfg = report["config"]
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and f.name != "README.md")
    head_dim = cfg["hidden_dim"] // cfg["num_heads"]
    rows = "\n".join(f"| {h['step']} | {h['train_loss']:.3f} | {h['val_loss']:.3f} | "
                     f"{math.exp(h['val_loss']):.1f} | {h['minutes']} |" for h in report["history"])
    # Nats per token -> bits per character, so the number compares across tokenizers.
    bpc = report["best_val_loss"] * report["val_tokens"] / report["val_chars"] / math.log(2)
    samples = ""
    for kind, title in [("greedy_samples", "Greedy"), ("sampled_samples", "Sampled")]:
        for prompt, text in report.get(kind, {}).items():
            samples += f"{title}, prompt {prompt!r}:\n\n```text\n{text.strip()}\n```\n\n"
    settings = report.get("sampler_settings", {})
    # Free-text notes added to training.json by hand (e.g. earlier runs and why they lost).
    notes = "".join(f"{n}\n\n" for n in report.get("notes", []))
    stopped = ""
    if report["steps_run"] < cfg["max_steps"]:
        stopped = (f" This run was stopped by the time budget at step {report['steps_run']} (the "
                   f"learning-rate schedule was planned for {cfg['max_steps']}), so a rerun on a "
                   "faster or quieter machine trains longer and ends elsewhere.")
    text = f"""# pocketlm_llama_shakespeare

A small Llama-architecture model (KerasHub `LlamaCausalLM`: rotary position embeddings,
grouped-query attention, RMSNorm, SwiGLU MLP) with its own SentencePiece tokenizer, both trained
from scratch here on Tiny Shakespeare and shipped inside pocketlm as the second embedded model.
It writes Shakespeare-flavoured text; it knows nothing else.

| | |
|---|---|
| parameters | {report['parameters']:,}: {cfg['num_layers']} layers, hidden {cfg['hidden_dim']}, {cfg['num_heads']} query heads / {cfg['num_key_value_heads']} key-value heads (head size {head_dim}), SwiGLU MLP {cfg['intermediate_dim']}, untied input/output embeddings |
| positions | RoPE (max wavelength {cfg['rope_max_wavelength']}); trained on windows of {cfg['max_sequence_length']} tokens, the preprocessor's `sequence_length` |
| norm | RMSNorm, epsilon 1e-6 |
| tokenizer | SentencePiece BPE, {cfg['vocabulary_size']:,} pieces, byte fallback, identity normalization, whitespace kept as written, `"\\n"` a piece of its own (exact round trip); `<pad>` 0, `<s>` 1, `</s>` 2, `<unk>` 3 |
| preset size | {size / 2**20:.1f} MiB (float32 weights + tokenizer) |
| data | `tinyshakespeare.txt` (public domain): first 90% for the tokenizer and training ({report['train_tokens']:,} tokens, {report['train_chars']:,} characters), last 10% held out ({report['val_tokens']:,} tokens, {report['val_chars']:,} characters), cut at a line start |
| training | {report['steps_run']} steps of {cfg['batch_size']} windows (`<s>` + {cfg['max_sequence_length'] - 1} text tokens, random starts), AdamW (lr {cfg['learning_rate']}, warm-up {cfg['warmup_steps']}, cosine to 10%), weight decay {cfg['weight_decay']} (not on norms), dropout {cfg['dropout']}, gradient clip 1.0, seed {cfg['seed']} |
| time | {report['minutes']} min on 2 CPU cores (sharing them with other work) |
| kept weights | step {report['best_step']}: held-out loss {report['best_val_loss']:.3f} nats/token, **perplexity {report['best_val_perplexity']:.1f}** (about {bpc:.2f} bits per character) |

Held-out loss is the mean over consecutive, non-overlapping windows of the held-out text, each
`<s>` + {cfg['max_sequence_length'] - 1} tokens, so early tokens of a window see little context.
Per-token perplexity depends on the tokenizer: compare with the GPT-2 preset in bits per
character, not perplexity.

Reproduce (the data is read from where it lies, never copied into the project):

```bash
{reproduce_command(cfg)}
```

The run stops at `--max-steps` or when `--minutes` are spent, whichever comes first; it saves
the preset at each new best held-out loss and keeps the best.{stopped} The tokenizer training is
deterministic (one thread, lines in file order); Keras training on CPU is seeded but not
bit-exact across machines or thread counts.

{notes}## Loss

| step | train loss | held-out loss | held-out perplexity | minutes |
|---:|---:|---:|---:|---:|
{rows}

## Samples (Keras `generate`, float model, {settings.get('max_length_tokens', '?')} tokens including `<s>` and the prompt)

Greedy is argmax; sampled is {settings.get('sampled', '?')}.

{samples.rstrip()}

## Limitations

- Trained on about one megabyte of Shakespeare's plays: it imitates their form (speaker names,
  verse lines) with little sense; it does not follow instructions, and it knows no facts.
- Sequences are {cfg['max_sequence_length']} tokens (about {cfg['max_sequence_length'] * report['train_chars'] // report['train_tokens']:,} characters); longer contexts are untested.
- The vocabulary is Shakespeare's: modern words split into many small pieces or bytes.
- Licence of the data: Tiny Shakespeare is public domain text.
"""
    (out / "README.md").write_text(text)
