"""``peft methods``: the registered methods and what each supports, measured by :mod:`peft.capabilities`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from peft.commands import add_verb

EXAMPLES = """\
examples:
  peft methods                 # a table of every method
  peft methods lora ia3        # only these
  peft methods --json          # for scripts
"""


def add_parser(commands: Any) -> None:
    parser = add_verb(
        commands,
        "methods",
        "list the PEFT methods and what each supports (layer types, merge, mixed batch, quantized base)",
        (
            "List the registered PEFT methods with what each supports, measured by applying it to one-layer models "
            "(takes a few seconds)."
        ),
        EXAMPLES,
    )
    parser.add_argument("names", nargs="*", metavar="METHOD", help="peft_type names (default: all)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from peft.capabilities import method_capabilities
    from peft.commands import CommandError
    from peft.registry import PEFT_TYPE_TO_CONFIG_MAPPING

    known = sorted(PEFT_TYPE_TO_CONFIG_MAPPING)
    names = [name.upper() for name in args.names] or known
    unknown = [name for name in names if name not in known]
    if unknown:
        raise CommandError(f"unknown method(s) {unknown}; known: {', '.join(known)}.")
    found = [method_capabilities(name) for name in names]
    if args.json:
        print(json.dumps([c.to_dict() for c in found], indent=2))
        return 0
    for c in found:
        if not c.layer_types:
            print(f"{c.peft_type:<24} {c.kind} (no layer is changed)")
            continue
        print(f"{c.peft_type:<24} {', '.join(c.layer_types)}")
        merge = "all" if c.merge == c.layer_types else (", ".join(c.merge) or "no")
        mixed = "all" if c.mixed_batch == c.layer_types else (", ".join(c.mixed_batch) or "no")
        print(f"{'':<24} merge: {merge}; mixed batch: {mixed}; quantized base: {'yes' if c.quantized_base else 'no'}")
    return 0
