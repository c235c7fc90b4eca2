"""CEL rules of CRDs (x-kubernetes-validations) evaluated offline, as the API server would.

cel-python evaluates standard CEL. Kubernetes adds extension libraries; only the functions the pinned CRDs'
rules call are implemented here (found by scanning every rule: `split` of the strings library). Any other
function is refused when a rule is compiled, so a rule we cannot evaluate fails loudly instead of passing.
"""

from dataclasses import dataclass
from functools import cache

import celpy
import lark
from celpy import celtypes


class UnsupportedCEL(Exception):
    pass


# Standard CEL functions and macros, as cel-python implements them.
STANDARD = frozenset(
    {
        "has", "all", "exists", "exists_one", "map", "filter", "size", "matches", "contains", "startsWith",
        "endsWith", "duration", "timestamp", "int", "uint", "double", "string", "bytes", "bool", "type",
        "dyn",
    }
)  # fmt: skip


def _split(target, separator, limit=None):
    """Kubernetes' <string>.split(<string>[, <int>]) (Go strings.SplitN semantics)."""
    text, sep = str(target), str(separator)
    n = -1 if limit is None else int(limit)
    if n == 0:
        return celtypes.ListType([])
    if sep == "":
        parts = (
            list(text) if n < 0 else [*list(text[: n - 1]), text[n - 1 :]] if len(text) >= n else list(text)
        )
    else:
        parts = text.split(sep) if n < 0 else text.split(sep, n - 1)
    return celtypes.ListType([celtypes.StringType(p) for p in parts])


KUBERNETES = {"split": _split}


def _names(tree: lark.Tree) -> tuple[set[str], set[str]]:
    """(functions called, identifiers read) in a parsed rule."""
    functions, identifiers = set(), set()
    for node in tree.iter_subtrees():
        if node.data == "member_dot_arg":
            functions.add(str(node.children[1]))
        elif node.data == "ident_arg":
            functions.add(str(node.children[0]))
        elif node.data == "ident":
            identifiers.add(str(node.children[0]))
    return functions, identifiers


@dataclass(frozen=True)
class Rule:
    text: str
    program: object
    transition: bool  # reads oldSelf: evaluated only on an update, with the old value at the same place


_env = celpy.Environment()


@cache
def compile_rule(text: str) -> Rule:
    try:
        tree = _env.compile(text)
    except celpy.CELParseError as error:
        raise UnsupportedCEL(f"cannot parse CEL rule {text!r}: {error}") from error
    functions, identifiers = _names(tree)
    unknown = functions - STANDARD - set(KUBERNETES)
    if unknown:
        raise UnsupportedCEL(
            f"CEL rule {text!r} calls {sorted(unknown)}, not implemented in tests/cluster/cel.py"
        )
    return Rule(text, _env.program(tree, functions=KUBERNETES), "oldSelf" in identifiers)


def evaluate(rule: Rule, value, old=None) -> tuple[bool, str]:
    """(passed, why) for one rule with `self` (and `oldSelf` for transition rules) bound."""
    activation = {"self": celpy.json_to_cel(value)}
    if rule.transition:
        activation["oldSelf"] = celpy.json_to_cel(old)
    try:
        result = rule.program.evaluate(activation)
    except celpy.CELEvalError as error:
        return False, f"error evaluating the rule: {error.args[0] if error.args else error}"
    if isinstance(result, celpy.CELEvalError):
        return False, f"error evaluating the rule: {result.args[0] if result.args else result}"
    if not isinstance(result, celtypes.BoolType):
        return False, f"the rule returned {type(result).__name__}, not a bool"
    return bool(result), ""
