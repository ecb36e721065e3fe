"""A griffe extension for the API reference (mkdocs.yml loads it through mkdocstrings).

- Each ``GatewayConfig`` field gets its ``help`` text, the one description of a setting (the
  configuration table, the Flask docstring and the Django checks read the same metadata), as its
  docstring.
- Sphinx roles in docstrings (``:class:`~aigw_middleware.errors.GatewayError```, ``:func:``,
  ``:meth:``, ...) become Markdown code spans with the short name, as the site shows code.
- A reStructuredText literal block's ``::`` becomes ``:`` (or goes, on a line of its own): the
  indented block after it is a Markdown code block as it stands.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|func|meth|attr|exc|data|mod|obj):`(?P<short>~?)(?P<target>[^`]+)`")
_LITERAL_ALONE = re.compile(r"^[ \t]*::[ \t]*\n", re.M)
_LITERAL_AFTER_TEXT = re.compile(r"(?<=\S)::$", re.M)
_CONFIG_CLASS = "aigw_middleware.config.GatewayConfig"


def _code_span(match: re.Match[str]) -> str:
    """``:class:`~a.b.C``` as `` `C` ``, ``:mod:`a.b``` as `` `a.b` ``."""
    target = match["target"]
    return f"`{target.rsplit('.', 1)[-1] if match['short'] else target}`"


def _setting_help(node: ast.AST | griffe.ObjectNode) -> str | None:
    """The ``help=`` of a ``field = _setting(...)`` assignment, if that is what ``node`` is."""
    if not isinstance(node, ast.AnnAssign) or not isinstance(node.value, ast.Call):
        return None
    for keyword in node.value.keywords:
        if keyword.arg == "help" and isinstance(keyword.value, ast.Constant):
            return str(keyword.value.value)
    return None


class AigwDocstrings(griffe.Extension):
    """Setting fields documented from their metadata; Sphinx roles as code spans."""

    def on_attribute_instance(
        self,
        *,
        node: ast.AST | griffe.ObjectNode,
        attr: griffe.Attribute,
        agent: Any,
        **kwargs: Any,
    ) -> None:
        if attr.parent is not None and attr.parent.path == _CONFIG_CLASS and not attr.docstring:
            text = _setting_help(node)
            if text:
                attr.docstring = griffe.Docstring(text[0].upper() + text[1:] + ".", parent=attr)

    def on_instance(
        self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, agent: Any, **kwargs: Any
    ) -> None:
        if obj.docstring is not None:
            text = _ROLE.sub(_code_span, obj.docstring.value)
            text = _LITERAL_ALONE.sub("", text)
            obj.docstring.value = _LITERAL_AFTER_TEXT.sub(":", text)
