"""Load a crew directory into typed models, reporting every problem with file:line:col.

The YAML is read with ruamel.yaml's round-trip loader because it keeps each
key's and value's position; pydantic's error locations are then walked
through that tree to say where each problem is. JSON files are located the
same way (JSON is YAML 1.2).
"""

from __future__ import annotations

import difflib
import json
import logging
import math
import os
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from agent_smith.credentials import credential_in, find_credentials
from agent_smith.crew.claude_files import Finding, check_credentials_stub, check_mcp, check_settings
from agent_smith.crew.models import Crew, shown
from agent_smith.errors import CrewError, Problem, UsageError

CREW_FILE = "crew.yaml"
AGENTS_DIR = "agents"
SHARED_DIR = "_shared"

Loc = tuple[str | int, ...]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Persona:
    """An agent's persona directory, in the established agent-smith format."""

    name: str
    directory: Path
    claude_md: str
    mcp_servers: Mapping[str, Any]
    subagents: tuple[Path, ...]


@dataclass(frozen=True)
class SharedFiles:
    """`agents/_shared/`: what every agent inherits."""

    directory: Path
    claude_md: str
    settings: Mapping[str, Any]
    credentials_stub: Mapping[str, Any] | None


@dataclass(frozen=True)
class LoadedCrew:
    root: Path
    crew: Crew
    shared: SharedFiles
    personas: Mapping[str, Persona]
    warnings: tuple[str, ...] = ()
    overrides: tuple[str, ...] = field(default=(), repr=False)


def resolve_crew_dir(path: Path | str | None, env: Mapping[str, str] | None = None) -> Path:
    """The crew directory from an argument, `$AGENT_SMITH_CREW`, or the current directory."""
    env = os.environ if env is None else env
    chosen = Path(path) if path is not None else Path(env.get("AGENT_SMITH_CREW", "."))
    chosen = chosen.expanduser()
    if chosen.name == CREW_FILE:
        return chosen.parent
    if chosen.is_file():
        raise UsageError(f"{chosen}: a file, not a crew directory (the directory that holds {CREW_FILE})")
    return chosen


def load_crew(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> LoadedCrew:
    """Load and check a whole crew directory; raise `CrewError` listing every problem found."""
    env = dict(os.environ if env is None else env)
    root = resolve_crew_dir(path, env)
    crew_file = root / CREW_FILE
    report = _Report(root)
    doc = _read_yaml(crew_file, report)
    if doc is None:
        raise CrewError(report.problems)
    if not isinstance(doc, CommentedMap):
        what = "is empty" if doc == {} else "must be a mapping of settings"
        report.add(crew_file, doc, (), "", f"crew.yaml {what} (`agent-smith init DIR` writes an example)")
        raise CrewError(report.problems)

    data = _plain(doc)
    sources = apply_env_overrides(data, env)
    if unused := unused_agent_variables(env):
        report.warn(
            f"{', '.join(unused)} set without AGENT_NAME: {'it applies' if len(unused) == 1 else 'they apply'} to no agent"
        )
    for warning in variable_warnings(env):
        report.warn(warning)
    crew = _validate(data, doc, sources, crew_file, report)
    _check_writable_values(data, doc, sources, crew_file, report)
    _check_no_credentials(data, doc, sources, crew_file, report)
    shared = _load_shared(root / AGENTS_DIR / SHARED_DIR, report)
    personas: dict[str, Persona] = {}
    if crew is not None:
        _semantic_checks(crew, doc, sources, crew_file, report)
        personas = _load_personas(root / AGENTS_DIR, crew, doc, sources, crew_file, report)
    if report.problems or crew is None:
        raise CrewError(sorted(set(report.problems)))
    crew = crew.located_in(root)
    log.debug(
        "loaded crew %s from %s",
        crew.crew.name,
        root,
        extra={"crew": crew.crew.name, "agents": [a.name for a in crew.agents], "warnings": len(report.warnings)},
    )
    return LoadedCrew(
        root=root,
        crew=crew,
        shared=shared,
        personas=personas,
        warnings=tuple(report.warnings),
        overrides=tuple(sorted(set(sources.values()))),
    )


class _Report:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.problems: list[Problem] = []
        self.warnings: list[str] = []

    def name(self, file: Path) -> str:
        try:
            return str(file.relative_to(Path.cwd()))
        except ValueError:
            return str(file)

    def add(self, file: Path | str, doc: Any, loc: Loc, path: str, message: str, *, key: bool = False) -> None:
        line, col = locate(doc, loc, key=key)
        where = file if isinstance(file, str) else self.name(file)
        self.problems.append(Problem(where, line, col, path, message))

    def warn(self, message: str) -> None:
        self.warnings.append(message)


# ---- YAML and positions -------------------------------------------------------------------


# YAML 1.2's core schema, as the editor's YAML (and the schema checking it) reads crew.yaml.
# ruamel's own 1.2 rules keep some of 1.1's: `2024-01-01` would be a date, which no text
# setting takes, and `1_000` or `0b11` a number, which the editor flags as text.
_CORE_SCHEMA = (
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)[eE][-+]?[0-9]+|[-+]?(?:\.[0-9]+|[0-9]+\.[0-9]*)"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:merge", r"^<<$", "<"),
)


class _CoreSchema(VersionedResolver):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A document that says `%YAML 1.1` still gets ruamel's 1.1 rules, as it asks.
        for tag, pattern, first in _CORE_SCHEMA:
            self.add_version_implicit_resolver((1, 2), tag, re.compile(pattern), list(first))


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Resolver = _CoreSchema
    yaml.allow_duplicate_keys = False
    return yaml


def _read_yaml(file: Path, report: _Report) -> Any:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        report.problems.append(
            Problem(
                report.name(file),
                1,
                1,
                "",
                # Run outside the crew's directory, a command is told where it is, or one is made.
                f"no crew.yaml in {file.parent.absolute()} (name the crew's directory with `--crew DIR` or "
                "AGENT_SMITH_CREW, or create one with `agent-smith init DIR`)",
            )
        )
        return None
    except UnicodeDecodeError as exc:
        report.problems.append(_undecodable(report.name(file), exc))
        return None
    except IsADirectoryError:
        report.problems.append(Problem(report.name(file), 1, 1, "", "a directory, not a file"))
        return None
    except OSError as exc:
        report.problems.append(Problem(report.name(file), 1, 1, "", f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        doc = _parse_yaml(text, report.name(file))
    except CrewError as exc:
        report.problems.extend(exc.problems)
        return None
    return {} if doc is None else doc


def _parse_yaml(text: str, where: str) -> Any:
    """`text` as YAML; a `CrewError` located in `where` when it is not, or is too big to walk."""
    try:
        data = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise CrewError([Problem(where, line, col, "", f"invalid YAML: {yaml_reason(exc)}")]) from None
    except ReaderError as exc:
        # A control character: YAML allows none but tab and line breaks.
        line, col = _line_col(text, exc.position)
        raise CrewError(
            [Problem(where, line, col, "", f"invalid YAML: the control character U+{exc.character:04X} is not allowed")]
        ) from None
    except ValueError as exc:
        # A number too long to read (Python's 4300-digit limit), say.
        raise CrewError([Problem(where, 1, 1, "", f"invalid YAML: {_first_clause(exc)}")]) from None
    except RecursionError:
        raise CrewError([Problem(where, 1, 1, "", _TOO_DEEP)]) from None
    if why := too_big(data):
        raise CrewError([Problem(where, 1, 1, "", why)])
    return data


_DUPLICATE_KEY = re.compile(r'found duplicate key "(.*?)" with value "', re.DOTALL)


def yaml_reason(exc: MarkedYAMLError) -> str:
    """What the YAML parser found wrong, in one line that quotes no value (pure)."""
    reason = exc.problem or exc.context or "not YAML"
    if isinstance(exc, DuplicateKeyError) and (found := _DUPLICATE_KEY.match(reason)):
        # ruamel quotes both values: a secret pasted twice would be shown, a block of text break the line.
        return f"the key {shown(found.group(1))} is given twice in one mapping"
    if "'\\t'" in reason:
        return "a tab here: use spaces (YAML indents with spaces only)"
    return " ".join(reason.split())


_MAX_DEPTH = 64
_MAX_VALUES = 100_000
_TOO_DEEP = f"nested more than {_MAX_DEPTH} levels deep"


def too_big(data: Any) -> str | None:
    """Why `data` is too deep, or (its YAML aliases expanded) too large, for the checks to walk; None
    when it is not. Pure, and bounded: a few hundred bytes of nested aliases expand to billions."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    for _ in range(_MAX_VALUES):
        if not stack:
            return None
        value, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return _TOO_DEEP
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
    return f"more than {_MAX_VALUES} values (each alias counted as what it expands to)" if stack else None


def _first_clause(exc: ValueError) -> str:
    """What a ValueError says before its details (Python's digit limit spells out a remedy)."""
    return str(exc).split(":")[0]


def _read_text(file: Path, report: _Report) -> str | None:
    """A crew file's text, or None after reporting why it cannot be read (not UTF-8, a dangling link).

    A link out of the crew directory is followed, with a warning: what it points at goes into an
    agent's home, for the model to read (a link to rules kept elsewhere is fine; one to a
    system file is a leak)."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        report.problems.append(_undecodable(report.name(file), exc))
        return None
    except OSError as exc:
        report.problems.append(Problem(report.name(file), 1, 1, "", f"cannot read: {exc}"))
        return None
    target = file.resolve()
    if not target.is_relative_to(report.root.resolve()):
        report.warn(f"{report.name(file)}:1:1: links to {target}, outside the crew directory: the agent reads it")
    return text


def _line_col(text: str, offset: int) -> tuple[int, int]:
    """The 1-based line and column of `offset` in `text` (pure)."""
    return text.count("\n", 0, offset) + 1, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _undecodable(where: str, exc: UnicodeDecodeError) -> Problem:
    """A file that is not UTF-8, located at its first bad byte (the column counts characters)."""
    before = exc.object[: exc.start].decode("utf-8", "replace")
    line, col = _line_col(before, len(before))
    return Problem(where, line, col, "", f"not UTF-8 here ({exc.reason})")


def _present(file: Path) -> bool:
    """A file to read, or a link that should be one (a dangling link is reported, not skipped)."""
    return file.is_file() or file.is_symlink()


def locate(doc: Any, loc: Loc, *, key: bool = False) -> tuple[int, int]:
    """1-based (line, col) of the deepest node of `loc` present in a ruamel tree.

    With `key`, the position of the last key itself (for "unknown key" errors).
    """
    line, col = 0, 0
    node = doc
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if isinstance(node, CommentedMap) and part in node:
            pos = _position(node, part, key=last and key)
            if pos is None:
                break
            line, col = pos
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line, col = node.lc.item(part)
            node = node[part]
        elif isinstance(part, str) and isinstance(node, CommentedMap | CommentedSeq):
            continue
        else:
            break
    if (line, col) == (0, 0) and hasattr(doc, "lc"):
        line, col = doc.lc.line, doc.lc.col
    return line + 1, col + 1


def _position(node: CommentedMap, part: str | int, *, key: bool) -> tuple[int, int] | None:
    """0-based (line, col) of `part`'s key or value in `node`. A key a `<<: *anchor` merge brought
    in has no position in the map it was merged into: it is where the anchored map wrote it."""
    if part in (node.lc.data or {}):
        pos = node.lc.key(part) if key else node.lc.value(part)
        return pos[0], pos[1]
    for source in getattr(node, "merge", ()):
        if isinstance(source, CommentedMap) and part in source:
            return _position(source, part, key=key)
    return None


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    for kind in (str, int, float):
        if isinstance(node, kind):
            return kind(node)
    return node


# ---- environment overrides ----------------------------------------------------------------

CONTAINER_CONTRACT = {
    "AGENT_REPOS": "agents[AGENT_NAME].repos (comma or space separated owner/name list)",
    "PRIMARY_REPO": "agents[AGENT_NAME].primary_repo",
    "MATRIX_HOMESERVER_URL": "matrix.homeserver",
    "MATRIX_BOT_USER_ID": "agents[AGENT_NAME].matrix.user_id",
    "MATRIX_ALLOWED_USERS": "agents[AGENT_NAME].matrix.allowed_senders (comma or space separated)",
    "GITHUB_TOKEN": "forge.token_placeholder (must be a placeholder, never a real token)",
    "NATS_URL": "events.nats_url",
    "AGENT_SMITH_CA_CERT": "egress.ca_cert",
}
_ENV_PREFIX = "AGENT_SMITH_"
_SPLIT = re.compile(r"[,\s]+")


def apply_env_overrides(data: dict[str, Any], env: Mapping[str, str]) -> dict[Loc, str]:
    """Apply the container contract and `AGENT_SMITH_<SECTION>__<KEY>` variables to raw crew data.

    Returns which locations came from which variable, so problems in them are
    reported against the variable rather than a line of crew.yaml.
    """
    sources: dict[Loc, str] = {}

    def put(loc: Loc, value: Any, var: str) -> None:
        node: Any = data
        for depth, part in enumerate(loc[:-1], 1):
            if isinstance(part, str):
                child = node.get(part)
                if isinstance(child, list) and isinstance(loc[depth], str):
                    # Its items have no names to reach them by, and a position would change
                    # meaning as crew.yaml changes: only the contract names one (an agent).
                    raise CrewError(
                        [
                            Problem(
                                f"${var}", 1, 1, "",
                                f"{format_loc(loc[:depth])} is a list: a variable cannot set "
                                f"{format_loc(loc[depth:])} in it",
                            )
                        ]
                    )  # fmt: skip
                if not isinstance(child, dict | list):
                    node[part] = {}
                    # Made by the variable: a problem there (an unknown key, say) is the variable's.
                    sources.setdefault(loc[:depth], var)
            node = node[part]
        node[loc[-1]] = value
        sources[loc] = var

    for var, value in sorted(env.items()):
        if var.startswith(_ENV_PREFIX) and "__" in var:
            path = tuple(p.lower() for p in var[len(_ENV_PREFIX) :].split("__") if p)
            if path[:1] == ("agents",):
                # A list by position would change meaning as crew.yaml changes: the contract names one agent.
                raise CrewError(
                    [
                        Problem(
                            f"${var}", 1, 1, "", "agents are not set this way: use AGENT_NAME and its AGENT_* variables"
                        )
                    ]
                )
            if path:
                put(path, _parse_yaml(value, f"${var}") if value.strip() else None, var)
    if env.get("MATRIX_HOMESERVER_URL"):
        put(("matrix", "homeserver"), env["MATRIX_HOMESERVER_URL"], "MATRIX_HOMESERVER_URL")
    if env.get("NATS_URL"):
        put(("events", "nats_url"), env["NATS_URL"], "NATS_URL")
    if env.get("GITHUB_TOKEN"):
        put(("forge", "token_placeholder"), env["GITHUB_TOKEN"], "GITHUB_TOKEN")
    if env.get("AGENT_SMITH_CA_CERT"):
        put(("egress", "ca_cert"), env["AGENT_SMITH_CA_CERT"], "AGENT_SMITH_CA_CERT")

    name = env.get("AGENT_NAME")
    agents = data.get("agents")
    if name and isinstance(agents, list):
        index = next((i for i, a in enumerate(agents) if isinstance(a, dict) and a.get("name") == name), None)
        if index is None:
            agents.append({"name": name})
            index = len(agents) - 1
            sources[("agents", index, "name")] = "AGENT_NAME"
        if env.get("AGENT_REPOS"):
            put(
                ("agents", index, "repos"),
                [r for r in _SPLIT.split(env["AGENT_REPOS"]) if r],
                "AGENT_REPOS",
            )
        if env.get("PRIMARY_REPO"):
            put(("agents", index, "primary_repo"), env["PRIMARY_REPO"], "PRIMARY_REPO")
        if env.get("MATRIX_BOT_USER_ID"):
            put(
                ("agents", index, "matrix", "user_id"),
                env["MATRIX_BOT_USER_ID"],
                "MATRIX_BOT_USER_ID",
            )
        if env.get("MATRIX_ALLOWED_USERS"):
            users = [u for u in _SPLIT.split(env["MATRIX_ALLOWED_USERS"]) if u]
            put(("agents", index, "matrix", "allowed_senders"), users, "MATRIX_ALLOWED_USERS")
    return sources


# The container contract's variables about one agent: AGENT_NAME says which (pure).
AGENT_VARIABLES = ("AGENT_REPOS", "PRIMARY_REPO", "MATRIX_BOT_USER_ID", "MATRIX_ALLOWED_USERS")


def unused_agent_variables(env: Mapping[str, str]) -> list[str]:
    """The agent variables that are set while AGENT_NAME is not, so that none of them applies."""
    return [] if env.get("AGENT_NAME") else [v for v in AGENT_VARIABLES if env.get(v)]


# The contract's variables that set a key an `AGENT_SMITH_<SECTION>__<KEY>` one could set too.
_CONTRACT_KEYS: dict[str, Loc] = {
    "MATRIX_HOMESERVER_URL": ("matrix", "homeserver"),
    "NATS_URL": ("events", "nats_url"),
    "GITHUB_TOKEN": ("forge", "token_placeholder"),
    "AGENT_SMITH_CA_CERT": ("egress", "ca_cert"),
}


def variable_warnings(env: Mapping[str, str]) -> list[str]:
    """Variables that look like overrides but set nothing (pure): a key's name joined with a
    single `_` (`AGENT_SMITH_EVENTS_MAX_AGE`), and one that a contract variable overrides in turn."""
    warnings: list[str] = []
    meant = {"_".join(path).upper(): "__".join(path).upper() for path in settable_keys(Crew)}
    for var in sorted(env):
        rest = var[len(_ENV_PREFIX) :]
        if var.startswith(_ENV_PREFIX) and "__" not in rest and rest.upper() in meant:
            warnings.append(
                f"{var} sets nothing: nested keys are joined by two underscores ({_ENV_PREFIX}{meant[rest.upper()]})"
            )
    for contract, loc in _CONTRACT_KEYS.items():
        if not env.get(contract):
            continue
        for var in sorted(env):
            if (
                var.startswith(_ENV_PREFIX)
                and tuple(p.lower() for p in var[len(_ENV_PREFIX) :].split("__") if p) == loc
            ):
                warnings.append(f"{var} is overridden by {contract}, which sets {format_loc(loc)} too")
    return warnings


def settable_keys(model: type[BaseModel], prefix: Loc = ()) -> list[tuple[str, ...]]:
    """The key paths, two deep or more, that an `AGENT_SMITH_<SECTION>__<KEY>` variable can set
    (pure): not in agents, nor inside a list."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        key = info.alias or name
        if not prefix and key == "agents":
            continue
        path = (*prefix, key)
        if len(path) > 1:
            paths.append(tuple(str(p) for p in path))
        inner, is_list = model_inside(info.annotation)
        if inner is not None and not is_list:
            paths.extend(settable_keys(inner, path))
    return paths


def _source_of(loc: Loc, sources: Mapping[Loc, str]) -> str | None:
    for n in range(len(loc), 0, -1):
        if loc[:n] in sources:
            return sources[loc[:n]]
    return None


# ---- validation ---------------------------------------------------------------------------


def _validate(data: dict[str, Any], doc: Any, sources: Mapping[Loc, str], file: Path, report: _Report) -> Crew | None:
    try:
        return Crew.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = _clean_loc(error["loc"])
            message = _message(error, loc)
            var = _source_of(loc, sources)
            if var is not None:
                report.problems.append(Problem(f"${var}", 1, 1, format_loc(loc), message))
            else:
                report.add(file, doc, loc, format_loc(loc), message, key=error["type"] == "extra_forbidden")
        return None


def _check_writable_values(
    data: dict[str, Any], doc: Any, sources: Mapping[Loc, str], file: Path, report: _Report
) -> None:
    """What no file assembly writes can hold (`unwritable`), where a field's own check has not
    said it already."""
    said = {p.path for p in report.problems}
    for loc, message, key in unwritable(data, json_numbers=False):
        if format_loc(loc) in said:
            continue
        var = _source_of(loc, sources)
        if var is not None:
            report.problems.append(Problem(f"${var}", 1, 1, format_loc(loc), message))
        else:
            report.add(file, doc, loc, format_loc(loc), message, key=key)


# A UTF-16 surrogate alone (from an escape like \ud800): no character, so no UTF-8 file can hold it.
SURROGATE = re.compile("[\ud800-\udfff]")
_NO_TEXT = (
    "holds a UTF-16 surrogate (U+D800 to U+DFFF, from an escape like \\ud800): it is no character, "
    "and no UTF-8 file can hold it"
)
_NOT_JSON = "is NaN or infinite, which is no JSON number: Claude Code refuses the whole file"


def unwritable(data: Any, *, json_numbers: bool) -> Iterable[tuple[Loc, str, bool]]:
    """Where `data` holds what the files assembly writes cannot carry, why, and whether it is in
    the key at that location rather than its value (pure).

    A string or key with a surrogate: YAML's `\\ud800` escapes make one (even in pairs), JSON's
    when unpaired; it has no UTF-8 form, so writing CLAUDE.md or settings.json would fail
    half-way through an assembly. With `json_numbers`, a number that is
    NaN or infinite (Python's JSON reader takes `NaN`, `Infinity` and `1e999`; Claude Code's
    JSON.parse refuses them, and with them the whole settings.json or ~/.claude.json).
    """
    stack: list[tuple[Loc, Any]] = [((), data)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and SURROGATE.search(key):
                    yield (*loc, key), _NO_TEXT, True
                else:
                    stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in enumerate(value))
        elif isinstance(value, str) and SURROGATE.search(value):
            yield loc, _NO_TEXT, False
        elif json_numbers and isinstance(value, float) and not math.isfinite(value):
            yield loc, _NOT_JSON, False


def _check_no_credentials(
    data: dict[str, Any], doc: Any, sources: Mapping[Loc, str], file: Path, report: _Report
) -> None:
    """Every value of crew.yaml reaches the agents somewhere (a role in CLAUDE.md, a prompt typed
    into the pane): none may look like a real secret. Each said once, where a field's own check
    has not said it already."""
    said = {p.path for p in report.problems}
    for loc, kind in find_credentials(data):
        if format_loc(loc) in said:
            continue
        message = f"looks like {kind}; agents see crew.yaml's values, so it holds placeholders only (value not shown)"
        var = _source_of(loc, sources)
        if var is not None:
            report.problems.append(Problem(f"${var}", 1, 1, format_loc(loc), message))
        else:
            report.add(file, doc, loc, format_loc(loc), message)


def _check_text(file: Path, text: str, report: _Report) -> None:
    """A Markdown file copied into the agents' homes holds no real secret."""
    if (found := credential_in(text)) is not None:
        offset, kind = found
        line, col = _line_col(text, offset)
        report.problems.append(
            Problem(
                report.name(file), line, col, "",
                f"looks like {kind}; it is copied into the agents' homes, which hold placeholders only (value not shown)",
            )
        )  # fmt: skip


def _clean_loc(loc: Iterable[str | int]) -> Loc:
    # pydantic inserts validator and union-branch names into locations; they are not keys.
    return tuple(p for p in loc if isinstance(p, int) or not re.match(r"^(function-|[a-z]+\[)", p))


def _message(error: Mapping[str, Any], loc: Loc) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _fields_at(Crew, loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        suffix = f"; did you mean {hint[0]!r}?" if hint else (f"; known keys: {', '.join(known)}" if known else "")
        return f"unknown key{suffix}"
    if kind == "missing":
        return "required"
    if kind == "string_pattern_mismatch":
        return f"does not match the pattern {error['ctx']['pattern']}"
    given = error.get("input")
    if kind == "string_type" and isinstance(given, bool | int | float):
        # YAML reads an unquoted `4` or `true` as a number or a flag.
        text = str(given).lower() if isinstance(given, bool) else str(given)
        return (
            f'expected text, not {"the flag" if isinstance(given, bool) else "the number"} {text}: quote it ("{text}")'
        )
    if kind == "bool_type":
        return "expected true or false"
    if kind in ("enum", "literal_error") and isinstance(given, str):
        choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected", "")))
        folded = {c.casefold(): c for c in choices}
        hint = difflib.get_close_matches(given.casefold(), list(folded), n=1, cutoff=0.6)
        if hint:
            return f"{shown(given)} is not one of {', '.join(choices)}; did you mean {folded[hint[0]]!r}?"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys a model accepts at `loc` (for "did you mean")."""
    current: type[BaseModel] | None = model
    for part in loc:
        if isinstance(part, int):
            continue
        if current is None:
            return []
        field_info = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field_info is None:
            return []
        current, _ = model_inside(field_info.annotation)
    if current is None:
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def model_inside(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds once Optional/list/Annotated are stripped, and whether it is a list of them."""
    is_list = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None, is_list
            annotation = args[0]
        elif origin in (list, tuple, set):
            is_list = True
            annotation = typing.get_args(annotation)[0]
        else:
            break
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, is_list
    return None, is_list


def _semantic_checks(crew: Crew, doc: Any, sources: Mapping[Loc, str], file: Path, report: _Report) -> None:
    def problem(loc: Loc, message: str) -> None:
        var = _source_of(loc, sources)
        if var is not None:
            report.problems.append(Problem(f"${var}", 1, 1, format_loc(loc), message))
        else:
            report.add(file, doc, loc, format_loc(loc), message)

    _first_seen(((("agents", i, "name"), a.name) for i, a in enumerate(crew.agents)), "agent name", problem)
    _first_seen(
        ((("egress", "secrets", i, "name"), r.name) for i, r in enumerate(crew.egress.secrets)),
        "secret name",
        problem,
    )
    _placeholders(crew, problem)
    for loc, message in [*listener_problems(crew), *kubernetes_problems(crew)]:
        problem(loc, message)
    for i, rule in enumerate(crew.egress.secrets):
        names = {a.name for a in crew.agents}
        for j, agent_name in enumerate(rule.agents or ()):
            if agent_name not in names:
                problem(("egress", "secrets", i, "agents", j), f"no agent {agent_name!r} in this crew")
    # A login that is a name given twice is no second problem: the name is told.
    logins = [
        (("agents", i, "github_login"), a.login)
        for i, a in enumerate(crew.agents)
        if a.github_login is not None or all(b.name != a.name for b in crew.agents[:i])
    ]
    _first_seen(logins, "GitHub login", problem)
    users = [(("agents", i, "matrix", "user_id"), a.matrix.user_id) for i, a in enumerate(crew.agents) if a.matrix]
    _first_seen(users, "Matrix user id", problem)
    for loc, message in chat_identity_problems(crew):
        problem(loc, message)
    if crew.matrix is None:
        for i, agent in enumerate(crew.agents):
            if agent.matrix is not None:
                problem(
                    ("agents", i, "matrix"),
                    "set, but the crew has no matrix section with a homeserver",
                )
                break


def chat_identity_problems(crew: Crew) -> list[tuple[Loc, str]]:
    """Chat identities that would be taken for one another (pure): a way an agent is mentioned (its
    name, display name or user id's localpart) that is another agent's too (a mention of one would
    wake both), an operator who is an agent (its messages would count as a person's, and the loop
    guard would never stop it)."""
    problems: list[tuple[Loc, str]] = []
    owner: dict[str, int] = {}
    for i, agent in enumerate(crew.agents):
        # The first of a name given twice owns it (the second is told apart as a duplicate name).
        owner.setdefault(agent.name.casefold(), i)
    for i, agent in enumerate(crew.agents):
        if agent.matrix is None:
            continue
        spellings: list[tuple[Loc, str]] = [
            (("agents", i, "matrix", "user_id"), agent.matrix.user_id[1:].split(":")[0])
        ]
        if agent.matrix.display_name is not None:
            spellings.append((("agents", i, "matrix", "display_name"), agent.matrix.display_name))
        for loc, spelling in spellings:
            other = owner.setdefault(spelling.casefold(), i)
            if other != i:
                problems.append(
                    (
                        loc,
                        f"{spelling!r} is how {crew.agents[other].name} is mentioned too: a mention of one would wake both",
                    )
                )
    if crew.matrix is not None:
        agents = {a.matrix.user_id: a.name for a in crew.agents if a.matrix is not None}
        for k, operator in enumerate(crew.matrix.operators):
            if operator in agents:
                problems.append(
                    (
                        ("matrix", "operators", k),
                        f"{operator} is agent {agents[operator]}: an operator is a person (an agent's "
                        "messages would count as a person's, and nothing would stop a loop)",
                    )
                )
    return problems


def _port_of(address: str | None) -> int | None:
    """The port of ``host:port``; None when absent or malformed (the firewall refuses that at start)."""
    if address is None:
        return None
    _, colon, port = address.rpartition(":")
    return int(port) if colon and port.isdigit() else None


def same_address(one: str, other: str) -> bool:
    """Whether two ``host:port`` listeners would both bind one address (pure): one port (not 0, a
    free one picked at start) and one host, or a wildcard over the other's (``0.0.0.0`` over IPv4,
    ``::`` and an empty host over both)."""
    host, _, port = one.rpartition(":")
    other_host, _, other_port = other.rpartition(":")
    if port != other_port or not port.isdigit() or int(port) == 0:
        return False
    hosts = {host.strip("[]"), other_host.strip("[]")}
    if len(hosts) == 1 or hosts & {"", "*", "::"}:
        return True
    return "0.0.0.0" in hosts and not any(":" in h for h in hosts)


def listener_problems(crew: Crew) -> list[tuple[Loc, str]]:
    """Two of the firewall's listeners on one address, by location (pure): the second would fail
    to bind only once `up` had started the supervisor. (The supervisor's own is checked where
    both run on one host: `up`; in a cluster they are in pods of their own.)"""
    problems: list[tuple[Loc, str]] = []
    taken: list[tuple[Loc, str]] = []
    for loc, address in firewall_listeners(crew):
        first = next((at for at, used in taken if same_address(address, used)), None)
        if first is not None:
            problems.append((loc, f"{address} is already used at {format_loc(first)}"))
        taken.append((loc, address))
    return problems


def firewall_listeners(crew: Crew) -> list[tuple[Loc, str]]:
    """The addresses the firewall listens on, by location in crew.yaml."""
    egress = crew.egress
    return [
        (loc, address)
        for loc, address in (
            (("egress", "listen"), egress.listen),
            (("egress", "transparent_listen"), egress.transparent_listen),
            (("egress", "metrics_listen"), egress.metrics_listen),
        )
        if address is not None
    ]


def kubernetes_problems(crew: Crew) -> list[tuple[Loc, str]]:
    """What the Kubernetes render would refuse, by location (pure): transparent egress without
    what it needs, and the agents' own transparent listeners (`transparent_agent_problems`)."""
    problems: list[tuple[Loc, str]] = []
    if crew.kubernetes.transparent_egress:
        if crew.egress.transparent_listen is None:
            problems.append((("kubernetes", "transparent_egress"), "needs egress.transparent_listen"))
        if crew.kubernetes.firewall_cluster_ip is None:
            problems.append(
                (
                    ("kubernetes", "transparent_egress"),
                    "needs kubernetes.firewall_cluster_ip (a free address in the cluster's Service range)",
                )
            )
    return problems + transparent_agent_problems(crew)


def transparent_agent_problems(crew: Crew) -> list[tuple[Loc, str]]:
    """What is wrong with the agents' own transparent listeners (``agents[].kubernetes``), by location.

    Each agent's port and Service address must be its own, or one agent would act
    under another's identity; the listeners listen on `egress.transparent_listen`'s
    host, beside the firewall's other ports. Pure, so the render checks the same.
    """
    problems: list[tuple[Loc, str]] = []
    egress = crew.egress
    ports: dict[int, Loc] = {}
    for loc, address in (
        (("egress", "listen"), egress.listen),
        (("egress", "transparent_listen"), egress.transparent_listen),
        (("egress", "metrics_listen"), egress.metrics_listen),
    ):
        port = _port_of(address)
        if port is not None:
            ports.setdefault(port, loc)
    ips: dict[str, Loc] = {}
    if crew.kubernetes.firewall_cluster_ip is not None:
        ips[crew.kubernetes.firewall_cluster_ip] = ("kubernetes", "firewall_cluster_ip")
    for i, agent in enumerate(crew.agents):
        block = agent.kubernetes
        if block is None:
            continue
        here: Loc = ("agents", i, "kubernetes")
        if egress.transparent_listen is None:
            problems.append((here, "needs egress.transparent_listen (its host is where this agent's listener listens)"))
        port_loc, ip_loc = (*here, "firewall_port"), (*here, "firewall_cluster_ip")
        if (first := ports.setdefault(block.firewall_port, port_loc)) != port_loc:
            problems.append((port_loc, f"port {block.firewall_port} is already used at {format_loc(first)}"))
        if (first := ips.setdefault(block.firewall_cluster_ip, ip_loc)) != ip_loc:
            problems.append((ip_loc, f"cluster IP {block.firewall_cluster_ip} is already used at {format_loc(first)}"))
    return problems


def _placeholders(crew: Crew, problem: Any) -> None:
    """Two rules may share a placeholder only when they are for different agents."""
    seen: list[tuple[int, str, frozenset[str] | None]] = []
    for i, rule in enumerate(crew.egress.secrets):
        scope = frozenset(rule.agents) if rule.agents is not None else None
        for j, placeholder, other in seen:
            if placeholder == rule.placeholder and (scope is None or other is None or scope & other):
                problem(
                    ("egress", "secrets", i, "placeholder"),
                    f"placeholder is already used at egress.secrets[{j}].placeholder for the same agents "
                    "(give each rule its own agents to share one placeholder)",
                )
                break
        seen.append((i, rule.placeholder, scope))


def _first_seen(items: Iterable[tuple[Loc, str]], what: str, problem: Any) -> None:
    seen: dict[str, Loc] = {}
    for loc, value in items:
        if value in seen:
            problem(loc, f"{what} {value!r} is already used at {format_loc(seen[value])}")
        else:
            seen[value] = loc


# ---- the agents/ directory ----------------------------------------------------------------


def _read_json(file: Path, report: _Report) -> tuple[Any, Any] | None:
    """(plain data, positioned tree) of a JSON file, or None after reporting why not."""
    text = _read_text(file, report)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        report.problems.append(Problem(report.name(file), exc.lineno, exc.colno, "", f"invalid JSON: {exc.msg}"))
        return None
    except ValueError as exc:
        report.problems.append(Problem(report.name(file), 1, 1, "", f"invalid JSON: {_first_clause(exc)}"))
        return None
    except RecursionError:
        report.problems.append(Problem(report.name(file), 1, 1, "", _TOO_DEEP))
        return None
    if why := too_big(data):
        report.problems.append(Problem(report.name(file), 1, 1, "", why))
        return None
    try:
        tree = _yaml().load(text)
    except (MarkedYAMLError, ReaderError, ValueError):
        tree = None
    if found := list(unwritable(data, json_numbers=True)):
        for loc, message, key in found:
            report.add(file, tree, loc, format_loc(loc), message, key=key)
        return None
    return data, tree


def _report_findings(file: Path, tree: Any, findings: Sequence[Finding], report: _Report) -> None:
    for finding in findings:
        path = format_loc(finding.path)
        if finding.severity == "warning":
            line, col = locate(tree, finding.path)
            report.warn(f"{report.name(file)}:{line}:{col}: {path}: {finding.message}")
        else:
            report.add(file, tree, finding.path, path, finding.message)


def _load_shared(directory: Path, report: _Report) -> SharedFiles:
    claude_md = ""
    settings: Mapping[str, Any] = {}
    stub: Mapping[str, Any] | None = None
    if not directory.is_dir():
        report.warn(f"{report.name(directory)}/ is missing: agents inherit no shared rules or settings")
        return SharedFiles(directory, claude_md, settings, stub)
    if _present(md := directory / "CLAUDE.md"):
        claude_md = _read_text(md, report) or ""
        _check_text(md, claude_md, report)
    if _present(file := directory / "settings.json") and (parsed := _read_json(file, report)):
        _report_findings(file, parsed[1], check_settings(parsed[0]), report)
        settings = parsed[0] if isinstance(parsed[0], dict) else {}
    if _present(file := directory / ".credentials.json") and (parsed := _read_json(file, report)):
        _report_findings(file, parsed[1], check_credentials_stub(parsed[0]), report)
        stub = parsed[0] if isinstance(parsed[0], dict) else None
    return SharedFiles(directory, claude_md, settings, stub)


_FRONTMATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.DOTALL)


def _load_personas(
    agents_dir: Path, crew: Crew, doc: Any, sources: Mapping[Loc, str], crew_file: Path, report: _Report
) -> dict[str, Persona]:
    personas: dict[str, Persona] = {}
    for i, agent in enumerate(crew.agents):
        directory = agents_dir / agent.name
        if not directory.is_dir() and sources.get(("agents", i, "name")) == "AGENT_NAME":
            # Not in crew.yaml: most likely a slip in the name, not an agent meant to be made here.
            others = ", ".join(a.name for a in crew.agents[:i] + crew.agents[i + 1 :]) or "none"
            report.problems.append(
                Problem(
                    "$AGENT_NAME",
                    1,
                    1,
                    "",
                    f"{agent.name!r} is no agent of crew.yaml ({others}), and there is no persona directory "
                    f"{report.name(directory)}/ to make it from",
                )
            )
            continue
        if not directory.is_dir():
            report.add(
                crew_file,
                doc,
                ("agents", i, "name"),
                f"agents[{i}].name",
                f"no persona directory {report.name(directory)}/ (it needs at least a CLAUDE.md)",
            )
            continue
        md = directory / "CLAUDE.md"
        if not _present(md):
            report.problems.append(
                Problem(
                    report.name(md),
                    1,
                    1,
                    "",
                    f"missing: the persona of {agent.name!r} needs its CLAUDE.md",
                )
            )
            continue
        servers: Mapping[str, Any] = {}
        if _present(file := directory / "mcp.json") and (parsed := _read_json(file, report)):
            _report_findings(file, parsed[1], check_mcp(parsed[0]), report)
            if isinstance(parsed[0], dict) and isinstance(parsed[0].get("mcpServers"), dict):
                servers = parsed[0]["mcpServers"]
        subagents = tuple(sorted((directory / "subagents").glob("*.md")))
        for sub in subagents:
            _check_subagent(sub, report)
        text = _read_text(md, report)
        if text is not None:
            _check_text(md, text, report)
            personas[agent.name] = Persona(agent.name, directory, text, servers, subagents)
    named = {a.name for a in crew.agents} | {SHARED_DIR}
    if agents_dir.is_dir():
        for extra in sorted(p for p in agents_dir.iterdir() if p.is_dir() and p.name not in named):
            report.warn(f"{report.name(extra)}/: persona directory not named in crew.yaml; it is not used")
    return personas


def _check_subagent(file: Path, report: _Report) -> None:
    text = _read_text(file, report)
    if text is None:
        return
    _check_text(file, text, report)
    match = _FRONTMATTER.match(text)
    if match is None:
        report.warn(
            f"{report.name(file)}:1:1: no front matter (---\\nname: …\\ndescription: …\\n---); Claude Code ignores it"
        )
        return
    try:
        meta = _parse_yaml(match.group(1), report.name(file))
    except CrewError as exc:
        # Located in the front matter, which begins on the file's second line.
        report.problems.extend(
            replace(p, line=p.line + 1, message=p.message.replace("invalid YAML", "invalid front matter"))
            for p in exc.problems
        )
        return
    for key in ("name", "description"):
        if not isinstance(meta, dict) or not meta.get(key):
            report.problems.append(Problem(report.name(file), 1, 1, key, "required in a subagent's front matter"))
