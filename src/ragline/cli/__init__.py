"""Every front door of the `ragline` command, one module per command group.

`root` holds the group and the index commands; the other groups (`answer`, `verify`,
`evaluate`, `eval_answers`, `eval_verifier`, `runs`, `llm`, `models`, `train`, `serve`) mount
on first use, so `ragline --help` and `ragline search` import none of them. Each command parses its
flags, calls the Python API and prints; `_common` holds what they share.
"""

from ragline.cli.root import LAZY_COMMANDS, app, load_lazy_command, main

__all__ = ["LAZY_COMMANDS", "app", "load_lazy_command", "main"]
