"""
State machines from one transition table, built with Automat's
``TypeMachineBuilder``.

A leg of a call writes its machine as a table of rows
``(from states, input, to state, actions)``: the whole behaviour in one
place, read top to bottom.  :func:`build` turns the table into an Automat
machine whose inputs are the methods of a ``Protocol``; each transition
sets the core's ``state`` to its target's name, then calls the named
action methods of the core with the input's arguments.  An input that
arrives while another is being handled (an action that calls back into
the leg) runs after it, as Automat's typed machines do.

A machine that reaches a state where every input is ignored hands its
core :data:`IGNORED` in place of its inputs: the core and the machine no
longer refer to each other, so a finished leg is freed at once instead of
waiting for the garbage collector.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from automat import TypeMachine, TypeMachineBuilder

Row = tuple[Sequence[str], str, str, Sequence[str]]


class _Ignored:
    """Inputs of a machine in a state that ignores them all: every method does nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return _nothing


def _nothing(*args: object, **kwargs: object) -> None:
    """An ignored input."""


#: What a finished machine's core holds in place of its inputs.
IGNORED: Any = _Ignored()


def build(inputs: Any, core: type[Any], states: Sequence[str], table: Sequence[Row]) -> TypeMachine[Any, Any]:
    """
    The machine of ``table``.

    :param inputs: the Protocol whose methods are the inputs.
    :param core: the class whose instances the machine drives.
    :param states: every state's name, the initial one first.
    :param table: rows ``(from states, input name, to state, action names)``.
    :raises ValueError: a row names an unknown state, input or action.
    """
    builder: TypeMachineBuilder[Any, Any] = TypeMachineBuilder(inputs, core)
    known = {name: builder.state(name) for name in states}
    for sources, input_name, target, actions in table:
        signature = getattr(inputs, input_name, None)
        if signature is None or target not in known or not all(a in vars(core) for a in actions):
            raise ValueError(f"bad row {sources} --{input_name}--> {target} {actions}")
        for source in sources:
            known[source].upon(signature).to(known[target])(
                _transition(target, tuple(vars(core)[action] for action in actions)))
    return builder.build()


def _transition(target: str, actions: tuple[Callable[..., None], ...]) -> Callable[..., None]:
    def transition(machine: object, core: Any, *args: Any, **kwargs: Any) -> None:
        core.state = target
        for action in actions:
            action(core, *args, **kwargs)

    transition.__name__ = f"to_{target.replace('-', '_')}"
    return transition
