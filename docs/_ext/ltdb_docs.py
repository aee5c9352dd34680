"""Sphinx helpers of the litestar_db documentation (local extension, no network).

* ``.. config-fields:: litestar_db.config.PoolConfig`` renders a table of a config dataclass from the code itself:
  field, type, default, environment variable and the attribute docstring (``:lang: zh`` takes the description from
  ``docs/zh/config_fields_zh.py`` and warns - so fails the ``-W`` build - when a field has no translation).
* At ``builder-inited`` one API page per public module is generated under ``api/modules/`` (automodule, members
  from the module's ``__all__``), so a module that lands on main is documented without touching the docs.
* At ``env-check-consistency`` every name of every public module's ``__all__`` must have been documented
  somewhere; a missing one is a warning, hence an error under ``-W``.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import pkgutil
import re
import runpy
import typing
from pathlib import Path
from typing import Any

import env_vars  # docs/_ext is on sys.path (conf.py); kept apart so tests can import it without docutils
from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

__all__ = ("ENV_VARS", "SQLSTATE_NAMES", "ConfigFieldsDirective", "ErrorMappingDirective", "public_modules", "setup")

logger = logging.getLogger(__name__)
HERE = Path(__file__).resolve().parent
DOCS = HERE.parent
PACKAGE = "litestar_db"

ENV_VARS = env_vars.ENV_VARS

_HEADERS = {
    "en": ("Field", "Type", "Default", "Environment", "Meaning"),
    "zh": ("字段", "类型", "默认值", "环境变量", "说明"),
}


def public_modules() -> list[str]:
    """Every importable public module of the package (no ``_private`` part), sorted."""
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE]
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{PACKAGE}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        names.append(info.name)
    return sorted(names)


def _type_text(annotation: Any) -> str:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", repr(annotation))
    return text.replace("typing.", "")


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
        if isinstance(value, enum.Enum):
            return f"{type(value).__name__}.{value.name}"
        return repr(value)
    if f.default_factory is not dataclasses.MISSING:
        factory = f.default_factory
        return f"{getattr(factory, '__name__', 'factory')}()"
    return "(required)"


def _zh_descriptions() -> dict[str, str]:
    path = DOCS / "zh" / "config_fields_zh.py"
    return dict(runpy.run_path(str(path))["DESCRIPTIONS"])


class ConfigFieldsDirective(SphinxDirective):
    """Render the fields of a config dataclass as a table (see the module docstring)."""

    required_arguments = 1
    option_spec: typing.ClassVar[dict[str, Any]] = {"lang": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        target = self.arguments[0]
        module_name, _, class_name = target.rpartition(".")
        cls = getattr(importlib.import_module(module_name), class_name)
        lang = self.options.get("lang", "en")
        attr_docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
        zh = _zh_descriptions() if lang == "zh" else {}
        rows = []
        for f in dataclasses.fields(cls):
            key = f"{class_name}.{f.name}"
            if lang == "zh":
                description = zh.get(key)
                if description is None:
                    logger.warning(
                        "config-fields: no Chinese description for %s in zh/config_fields_zh.py",
                        key,
                        location=self.get_location(),
                    )
                    description = ""
            else:
                description = " ".join(attr_docs.get((class_name, f.name), [])).strip()
                if not description:
                    logger.warning("config-fields: %s has no attribute docstring", key, location=self.get_location())
            env = ENV_VARS.get(key, "")
            rows.append((f.name, _type_text(f.type), _default_text(f), env, description))
        return [self._table(_HEADERS[lang], rows)]

    widths: tuple[int, ...] = (14, 14, 12, 14, 46)

    def _table(self, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> nodes.table:
        table = nodes.table(classes=["config-fields"])
        group = nodes.tgroup(cols=len(headers))
        table += group
        for width in self.widths:
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(headers, literal=())
        body = nodes.tbody()
        group += body
        for row in rows:
            body += self._row(row, literal=(0, 1, 2, 3))
        return table

    def _row(self, cells: tuple[str, ...], literal: tuple[int, ...]) -> nodes.row:
        row = nodes.row()
        for index, value in enumerate(cells):
            entry = nodes.entry()
            if value and index in literal:
                entry += nodes.paragraph("", "", nodes.literal(value, value))
            elif value:
                # descriptions carry inline reST (``code``); parse them
                parsed, _messages = self.state.inline_text(value, self.lineno)
                entry += nodes.paragraph("", "", *parsed)
            row += entry
        return row


def _owner(module_name: str, name: str, modules: list[str]) -> str:
    """The public module that defines ``name`` (a package re-exporting a submodule's name points there)."""
    obj = getattr(importlib.import_module(module_name), name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        owner = getattr(obj, "__module__", module_name)
        if owner in modules:
            return str(owner)
        # defined in a private module: documented once, in the deepest public module that exports it
        exporters = [
            m
            for m in modules
            if name in getattr(importlib.import_module(m), "__all__", ())
            and getattr(importlib.import_module(m), name) is obj
        ]
        return max(exporters, key=lambda m: (m.count("."), m), default=module_name)
    for other in modules:
        submodule = importlib.import_module(other) if other.startswith(f"{module_name}.") else None
        if submodule is not None and name in getattr(submodule, "__all__", ()) and getattr(submodule, name) is obj:
            return other
    return module_name


def _directive(module_name: str, name: str) -> str:
    obj = getattr(importlib.import_module(module_name), name)
    target = f"{module_name}.{name}"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return f".. autoexception:: {target}\n   :members:\n   :show-inheritance:\n"
        return f".. autoclass:: {target}\n   :members:\n   :show-inheritance:\n"
    if inspect.isroutine(obj) or callable(getattr(obj, "__wrapped__", None)):
        return f".. autofunction:: {target}\n"
    return f".. autodata:: {target}\n   :no-value:\n"


def _api_page(module_name: str, modules: list[str]) -> str:
    module = importlib.import_module(module_name)
    title = f"``{module_name}``"
    parts = [
        ".. This file is generated by docs/_ext/ltdb_docs.py at every build; do not edit.\n",
        f"{title}\n{'=' * len(title)}\n",
        f".. automodule:: {module_name}\n   :no-members:\n",
    ]
    reexports = []
    for name in getattr(module, "__all__", ()):
        owner = _owner(module_name, name, modules)
        if owner != module_name:
            reexports.append(f"* :py:obj:`{name} <{owner}.{name}>` (from :py:mod:`{owner}`)")
        else:
            parts.append(_directive(module_name, name))
    if reexports:
        parts.insert(3, "Re-exported names:\n\n" + "\n".join(reexports) + "\n")
    return "\n".join(parts)


SQLSTATE_NAMES: dict[str, str] = {
    "23505": "unique_violation",
    "23503": "foreign_key_violation",
    "23P01": "exclusion_violation",
    "23502": "not_null_violation",
    "23514": "check_violation",
    "22001": "string_data_right_truncation",
    "22003": "numeric_value_out_of_range",
    "22007": "invalid_datetime_format",
    "22008": "datetime_field_overflow",
    "22P02": "invalid_text_representation",
    "40001": "serialization_failure",
    "40P01": "deadlock_detected",
    "57014": "query_canceled (statement_timeout)",
    "25006": "read_only_sql_transaction",
    "57P01": "admin_shutdown",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now",
    "53300": "too_many_connections",
    "55P03": "lock_not_available",
}
"""PostgreSQL condition names (Appendix A of the PostgreSQL manual) of the SQLSTATEs litestar_db maps."""

_MAPPING_HEADERS = {
    "en": ("Code", "Condition", "Raised as", "HTTP", "Retry-After"),
    "zh": ("代码", "含义", "异常类", "HTTP 状态", "Retry-After"),
}


class ErrorMappingDirective(ConfigFieldsDirective):
    """``.. error-mapping::`` renders the SQLSTATE and SQLite code tables of :mod:`litestar_db.errors`."""

    required_arguments = 0
    widths = (8, 26, 26, 8, 10)

    def run(self) -> list[nodes.Node]:
        from litestar_db import errors

        lang = self.options.get("lang", "en")
        rows = []
        for code, cls in errors._BY_SQLSTATE.items():
            name = SQLSTATE_NAMES.get(code)
            if name is None:
                logger.warning("error-mapping: no condition name for SQLSTATE %s", code, location=self.get_location())
            rows.append((code, name or "", cls.__name__, str(cls.status_code), _retry(cls)))
        rows.append(("08xxx", "connection_exception (class 08)", "ConnectionLostError", "503", "yes"))
        for code, cls in errors._BY_SQLITE_CODE.items():
            rows.append((code, "SQLite", cls.__name__, str(cls.status_code), _retry(cls)))
        if lang == "zh":
            rows = [(*row[:4], "是" if row[4] else "") for row in rows]
        return [self._table(_MAPPING_HEADERS[lang], rows)]


def _retry(cls: type) -> str:
    from litestar_db import errors

    return "yes" if issubclass(cls, errors.DatabaseUnavailableError | errors.TransactionConflictError) else ""


def _generate_api_pages(app: Sphinx) -> None:
    out = Path(app.srcdir) / "api" / "modules"
    out.mkdir(parents=True, exist_ok=True)
    modules = public_modules()
    wanted = {f"{name}.rst": _api_page(name, modules) for name in modules}
    for stale in out.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    for filename, content in wanted.items():
        path = out / filename
        if not path.exists() or path.read_text() != content:  # keep mtimes stable for incremental builds
            path.write_text(content)


def _canonical_names(module_name: str, name: str) -> set[str]:
    modules = public_modules()
    return {f"{_owner(module_name, name, modules)}.{name}"}


def _check_public_names(app: Sphinx, env: BuildEnvironment) -> None:
    documented = set(env.get_domain("py").objects)  # type: ignore[attr-defined]
    for module_name in public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            if not documented & _canonical_names(module_name, name):
                logger.warning("public name %s.%s is not documented in the API reference", module_name, name)


_CJK_BREAK = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef])\n(?=[\u3000-\u9fff\uff00-\uffef])")


def _join_cjk_lines(app: Sphinx, doctree: nodes.document) -> None:
    """A line break between two Chinese characters is no space (reST source lines are wrapped for editing)."""
    if not app.env.docname.startswith("zh/"):
        return
    for text in list(doctree.findall(nodes.Text)):
        if isinstance(text.parent, nodes.literal_block | nodes.literal):
            continue
        joined = _CJK_BREAK.sub("", str(text))
        if joined != str(text):
            text.parent.replace(text, nodes.Text(joined))


def _chinese_lang_attr(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any], doctree: Any) -> None:
    """``<html lang="zh-CN">`` on the Chinese pages (fonts, hyphenation and screen readers depend on it)."""
    if pagename.startswith("zh/"):
        context["lang_attr"] = context["language"] = "zh-CN"


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("config-fields", ConfigFieldsDirective)
    app.add_directive("error-mapping", ErrorMappingDirective)
    app.connect("builder-inited", _generate_api_pages)
    app.connect("doctree-read", _join_cjk_lines)
    app.connect("html-page-context", _chinese_lang_attr)
    app.connect("env-check-consistency", _check_public_names)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
