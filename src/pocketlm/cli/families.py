"""``pocketlm families``: which KerasHub causal LMs pocketlm converts, and which it refuses.
Plain data (no Keras), so it answers instantly."""

from __future__ import annotations

import json

from .args import add_command


def add_families(sub) -> None:
    p = add_command(sub, "families", cmd_families,
                    help="list the model families pocketlm converts (and those it refuses)",
                    description="List the KerasHub decoder families pocketlm converts: their "
                                "KerasHub classes, tokenizer kind, what the export handles, "
                                "and the families it refuses with the reason.")
    p.add_argument("--json", action="store_true", help="print JSON for programs")
    p.add_argument("--presets", action="store_true",
                   help="also list KerasHub's preset names of each family (they download "
                        "on first use)")


def cmd_families(args) -> int:
    from ..families import FAMILIES, REFUSED
    from ..presets import KERAS_HUB_PRESETS

    by_task: dict[str, list[str]] = {}
    for name, task in KERAS_HUB_PRESETS.items():
        by_task.setdefault(task, []).append(name)
    rows = [{"name": f.name, "title": f.title, "task": f.task, "backbone": f.backbone,
             "tokenizer": f.tokenizer_kind, "tier": f.tier, "export": (
                 "hand-written graph" if f.fast_path else "call_with_cache"),
             "features": f.features,
             **({"presets": by_task.get(f.task, [])} if args.presets else {})}
            for f in FAMILIES.values()]
    refused = [{"task": r.task, "reason": r.reason} for r in REFUSED.values()]
    if args.json:
        print(json.dumps({"families": rows, "refused": refused}, indent=2))
        return 0
    print(f"{'family':<11} {'KerasHub task':<18} {'tokenizer':<9} {'tier':<6} features")
    for r in rows:
        print(f"{r['name']:<11} {r['task']:<18} {r['tokenizer']:<9} {r['tier']:<6} "
              f"{r['features']}")
        if args.presets and r["presets"]:
            print(f"{'':<11} presets: {', '.join(r['presets'])}")
    print("\nrefused:")
    for r in refused:
        print(f"  {r['task']}: {r['reason']}")
    print("  encoder-decoder models (*Seq2SeqLM): pocketlm converts decoder-only models")
    return 0
