"""``pocketlm chat``: a conversation with a .tflite model in the terminal (runtime side: no
TensorFlow). Each reply streams; the model's cache carries the conversation from turn to
turn (see :mod:`pocketlm.runtime.chat`)."""

from __future__ import annotations

import sys

from ..errors import PromptError, UsageError
from ..paths import check_input_file, check_model_file
from .args import Stdout, add_command, add_generation_options, integer
from .convert import progress
from .generate import MAX_THREADS, _check_tokenizer_spec

HELP = ("commands: /reset (forget the conversation, keep the system prompt), "
        "/system TEXT (set the system prompt; /system alone removes it), /exit")


def add_chat(sub) -> None:
    p = add_command(sub, "chat", cmd_chat,
                    help="chat with a .tflite model (streams; keeps the conversation)",
                    description="Chat with MODEL in its chat format (the file's, its family's, "
                                "or a plain transcript). Type a message per line; " + HELP +
                                ". With --prompt: one turn, then exit. Replies go to stdout, "
                                "notes to stderr. Needs no TensorFlow.")
    p.add_argument("model", help="a .tflite language model")
    p.add_argument("--system", metavar="TEXT", help="the system prompt")
    p.add_argument("--prompt", metavar="TEXT",
                   help="send this one message, print the reply and exit (no interaction)")
    p.add_argument("--chat-template", metavar="FILE",
                   help="a chat template JSON file replacing the model's (format: "
                        "docs/families.md, Chat templates)")
    add_generation_options(p, max_new_tokens=256, temperature=0.7, top_k=0, seed=None)
    p.add_argument("--tokenizer", help="for models that carry none: gpt2, a KerasHub preset "
                                       "directory, or VOCAB.json,MERGES.txt")
    p.add_argument("--threads", type=integer(1, MAX_THREADS), default=2,
                   help="interpreter threads")
    p.add_argument("--stats", action="store_true",
                   help="after each reply, print to stderr the tokens reused from the cache, "
                        "prefilled and generated")
    p.add_argument("--trust", action="store_true",
                   help="skip the first-use check that loads the file in a child process")


def cmd_chat(args) -> int:
    from ..chat_template import load_chat_template
    from ..config import GenerationConfig
    from ..runtime import load_model
    from ..runtime.chat import ChatSession

    try:
        cfg = GenerationConfig(max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                               top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    check_model_file(args.model)
    if args.tokenizer:
        _check_tokenizer_spec(args.tokenizer)
    template = None
    if args.chat_template:
        check_input_file(args.chat_template, "chat template file")
        try:
            template = load_chat_template(args.chat_template)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.prompt is not None and not args.prompt.strip():
        raise UsageError("--prompt is empty")
    if not args.trust:
        from ..runtime.guard import verify_in_child
        verify_in_child(args.model, tokenizer=args.tokenizer)
    model = load_model(args.model, tokenizer=args.tokenizer, num_threads=args.threads)
    session = ChatSession(model, template, system=args.system)
    interactive = args.prompt is None and sys.stdin.isatty()
    if interactive or args.stats:
        progress(f"chat format: {session.template.name} (from {session.template_source})")
    for note in session.notes:
        progress(note)
    if args.prompt is not None:
        _turn(session, args.prompt, cfg, args.stats)
        return 0
    if interactive:
        progress(f"{HELP}; end with Ctrl-D")
    while True:
        try:
            line = input("> ") if interactive else sys.stdin.readline()
        except EOFError:
            line = ""
        if not line:  # end of input
            if interactive:
                Stdout.write("\n")
            return 0
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        if line.startswith("/"):
            if not _command(session, line):
                return 0
            continue
        try:
            _turn(session, line, cfg, args.stats)
        except PromptError as exc:
            progress(f"pocketlm: error: {exc}")  # the conversation goes on
        except KeyboardInterrupt:
            if not interactive:
                raise
            Stdout.write("\n")
            progress("(reply interrupted; kept as far as it got)")


def _command(session, line: str) -> bool:
    """Run a /command; False to end the chat."""
    name, _, rest = line.partition(" ")
    if name in ("/exit", "/quit"):
        return False
    if name == "/reset":
        session.reset()
        progress("(conversation cleared)")
    elif name == "/system":
        text = rest.strip()
        session.set_system(text or None)
        progress("(system prompt set)" if text else "(system prompt removed)")
    elif name == "/help":
        progress(HELP)
    else:
        progress(f"pocketlm: error: unknown command {name}; {HELP}")
    return True


def _turn(session, text: str, cfg, stats: bool) -> None:
    done = session.send(text, cfg)
    turn = session.last_turn
    if turn.dropped_turns:
        progress(f"note: dropped the {turn.dropped_turns} oldest exchange"
                 f"{'' if turn.dropped_turns == 1 else 's'} to fit the model's window")
    for piece in done:
        Stdout.write(piece)
    Stdout.write("\n")
    if done.stop_reason == "window_full":
        progress(f"note: the reply stopped: the model's window ({session.model.sequence_length}"
                 " tokens) is full; /reset starts over")
    if stats:
        progress(f"{turn.prompt_tokens} prompt tokens: {turn.reused_tokens} reused from the "
                 f"cache, {turn.prefilled_tokens} prefilled; {len(done.token_ids)} new tokens "
                 f"({done.stop_reason})")
