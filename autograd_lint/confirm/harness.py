"""Building a confirm harness: the flagged code plus exactly what it depends on, then the rule's recipe.

The harness script imports the runtime package (`runtime/`, installed beside it by the runner as
`autograd_lint_runtime`): `probes` as `_agl_probes` and the rule's recipe module as `_agl_recipe`. The
script's module namespace is also the one the user's definitions run in, so the few names the script
itself binds (those two, `_agl_builders`, `_agl_factory`, ...) keep the `_agl_` prefix; everything else
lives in the runtime's own module namespaces.

The harness does not import the user's module. Its top-level statements that define the names the
recipe needs are copied (transitively: imports, constants, helpers, classes), in source order; the
`if __name__ == "__main__":` block and every other top-level statement are left out. The copy runs
as part of the module's package, with the project root (the folder above the top package, as
pytest's rootdir insertion) first on `sys.path`, so its relative and absolute imports of the
project resolve as they do for the project's own tests (importing the package runs its
`__init__.py`, which may import the module itself, as it does for the tests).
"""

from __future__ import annotations

import ast
import os
import re
import textwrap
from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from typing import TypeVar

import libcst as cst

from ..core.module import ParsedModule
from ..core.rule import Finding
from ..core.scopes import bindings
from ..core.syntax import assigned_names, code_of, dotted_name, walk
from ..facts.apply_flow import CallerWrite
from ..facts.second_derivatives import package_root
from .runner import RUNTIME_NAME


class CannotBuildHarness(Exception):
    """The recipe cannot run this finding; the message says exactly why (shown as `inconclusive`)."""


_Subject = TypeVar("_Subject")


def finding_subject(finding: Finding, kind: type[_Subject]) -> _Subject:
    """The finding's subject as the rule's builder expects it; another rule's finding cannot build its harness."""
    if not isinstance(finding.subject, kind):
        raise CannotBuildHarness(
            f"the finding carries a {type(finding.subject).__name__}, not the {kind.__name__} its harness needs"
        )
    return finding.subject


@dataclass
class Harness:
    """What a rule's recipe contributes: the top-level names it uses and the code that tests them."""

    names: set[str]  # must be defined at the module's top level
    main: str
    optional_names: set[str] = field(default_factory=set)  # copied when the module defines them


def build_script(module: ParsedModule, harness: Harness, recipe: str) -> str:
    """The harness script for `harness`, whose code calls the runtime module `recipe` (`agl002`) as `_agl_recipe`."""
    future, user_code = extract_definitions(module, harness.names, harness.optional_names)
    project_root, package = import_location(module)
    relative_path = os.path.relpath(os.path.abspath(module.path), project_root) if project_root else module.path
    # The copy is compiled apart so that a missing third-party import in it (or in a project module it
    # imports) is reported as such; linecache keeps its source readable for inspect (torch.jit.script).
    definitions = "\n".join([*future, user_code])
    parts = [
        *future,
        runtime_prelude(recipe, project_root, _project_folder(project_root)),
        f"__package__ = {package!r}" if package else "",
        "# ---- the user's definitions (copied, not imported) ----",
        f"_agl_probes.run_definitions({definitions!r}, {relative_path!r}, globals())",
        "# ---- the recipe ----",
        harness.main,
    ]
    return "\n".join(part for part in parts if part) + "\n"


def runtime_prelude(
    recipe: str | None = None, project_root: str | None = None, project_folder: str | None = None
) -> str:
    """The lines every harness script starts with: the runtime imported, the result channel the runner's
    bootstrap put in the script's namespace taken out of it (before any code under test runs) and handed to
    `probes.start`, with the project root to put first on sys.path (and the project's folder after it)."""
    imports = f"from {RUNTIME_NAME} import probes as _agl_probes" + (f", {recipe} as _agl_recipe" if recipe else "")
    folder = f", {project_folder!r}" if project_folder else ""
    return f'{imports}\n_agl_probes.start(globals().pop("_agl_channel", None), {project_root!r}, __file__{folder})'


_PROJECT_FILES = ("pyproject.toml", "setup.py", "setup.cfg")


def _project_folder(root: str | None) -> str | None:
    """The nearest folder at or above `root` with a pyproject.toml, setup.py or setup.cfg, when it is not
    `root` itself: where `python -m pytest`, run there, makes the project's other top packages importable
    (a sibling module that imports the project by name, `projects/X` importing the repository's package)."""
    if root is None:
        return None
    for folder in _ancestors(root):
        if any(os.path.isfile(os.path.join(folder, name)) for name in _PROJECT_FILES):
            return folder if folder != root else None
    return None


def extract_definitions(
    module: ParsedModule, names: set[str], optional: Set[str] = frozenset()
) -> tuple[list[str], str]:
    """(`from __future__` lines, the top-level statements that define `names`, transitively)."""
    statements = [s for s in module.tree.body if not _is_main_guard(s)]
    info = [(s, _binds(s), _uses(s)) for s in statements]
    chosen = _chosen_statements(info, set(names) | set(optional))
    future = [code_of(s).strip() for s in statements if _is_future_import(s)]
    code = _code_of_chosen(info, chosen)
    missing = set(names) - {name for index in chosen for name in info[index][1]}
    if missing:
        raise CannotBuildHarness(f"no top-level definition of {', '.join(sorted(missing))} in the module")
    return future, code


_StatementInfo = Sequence[tuple[cst.CSTNode, set[str], set[str]]]  # (statement, names it binds, names it uses)


def _chosen_statements(info: _StatementInfo, needed: set[str]) -> set[int]:
    """Indexes of the statements that define `needed`, transitively, and configure what they define."""
    needed = set(needed)
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        for index, (_statement, binds, uses) in enumerate(info):
            if index not in chosen and binds & needed:
                chosen.add(index)
                needed |= uses
                changed = True
    # Top-level configuration of a needed object (`GradDecay.alpha = 0.25`) belongs to its definition.
    for index, (statement, *_) in enumerate(info):
        if index not in chosen and _configures(statement, needed):
            chosen.add(index)
    return chosen


def _code_of_chosen(info: _StatementInfo, chosen: set[int]) -> str:
    return "".join(
        code_of(statement)
        for index, (statement, _, _) in enumerate(info)
        if index in chosen and not _is_future_import(statement)
    )


def _is_main_guard(statement: cst.CSTNode) -> bool:
    if not isinstance(statement, cst.If) or not isinstance(statement.test, cst.Comparison):
        return False
    text = "".join(code_of(statement.test).split()).replace("'", '"')
    return text in ('__name__=="__main__"', '"__main__"==__name__')


def _is_future_import(statement: cst.CSTNode) -> bool:
    return isinstance(statement, cst.SimpleStatementLine) and any(
        isinstance(s, cst.ImportFrom) and dotted_name(s.module) == "__future__"
        for s in statement.body
        if isinstance(s, cst.ImportFrom) and s.module
    )


def _binds(statement: cst.CSTNode) -> set[str]:
    if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
        return {statement.name.value}
    found: set[str] = set()
    for node in [statement, *walk(statement, into_functions=False)]:
        if isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            found.add(node.name.value)
        elif isinstance(node, cst.Assign):
            found |= {n.value for t in node.targets for n in assigned_names(t.target)}
        elif isinstance(node, (cst.AugAssign, cst.AnnAssign, cst.For)):
            found |= {n.value for n in assigned_names(node.target)}
        elif isinstance(node, cst.WithItem) and node.asname is not None:
            found |= {n.value for n in assigned_names(node.asname.name)}
        elif isinstance(node, (cst.Import, cst.ImportFrom)) and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                local = alias.asname.name if alias.asname else alias.name
                found.add((dotted_name(local) or "").split(".")[0])
    return found


def _uses(statement: cst.CSTNode) -> set[str]:
    return {node.value for node in walk(statement) if isinstance(node, cst.Name)}


def _configures(statement: cst.CSTNode, needed: set[str]) -> bool:
    if not isinstance(statement, cst.SimpleStatementLine):
        return False
    for small in statement.body:
        if isinstance(small, cst.Assign):
            for target in small.targets:
                root = dotted_name(target.target) if isinstance(target.target, cst.Attribute) else None
                if root and root.split(".")[0] in needed:
                    return True
    return False


def _import_root(path: str) -> str | None:
    """The directory from which the module's own package imports resolve (above its top package)."""
    if path.startswith("<") or path == "-":
        return None
    top_package = package_root(path)
    return os.path.dirname(top_package) if top_package else os.path.dirname(os.path.abspath(path))


def import_location(module: ParsedModule) -> tuple[str | None, str | None]:
    """(the folder to put first on sys.path, the package the module's relative imports are relative to).

    Above the module's top package, as pytest inserts it; higher where the module's own imports say that
    its package sits in a namespace package (folders without an `__init__.py`): above the folder its
    absolute import of the project starts with (`megatron` for `from megatron.core.utils import x`, when
    that module exists there), or as many folders up as its relative imports climb (`from .kernels import
    f` in ops/indexer.py: `ops` is a package).
    """
    root = _import_root(module.path)
    if root is None:
        return None, None
    folder = os.path.dirname(os.path.abspath(module.path))
    absolute, climb = _imports_of(module)
    for ancestor in _ancestors(folder):
        parent, name = os.path.dirname(ancestor), os.path.basename(ancestor)
        if _is_at_or_above(parent, root) and any(
            _resolves_under(parent, dotted) for dotted in absolute if dotted.split(".")[0] == name
        ):
            root = parent
            break
    depth = 0 if folder == root else len(os.path.relpath(folder, root).split(os.sep))
    for _ in range(climb - depth):  # `from ..x import y` needs the two folders above the module to be packages
        root = os.path.dirname(root)
    dotted = os.path.relpath(folder, root).replace(os.sep, ".") if folder != root else ""
    return root, dotted or None


def _imports_of(module: ParsedModule) -> tuple[set[str], int]:
    """(the dotted names the module imports absolutely, the most levels a relative import of it climbs)."""
    absolute: set[str] = set()
    climb = 0
    for node in walk(module.tree):
        if isinstance(node, cst.Import):
            absolute |= {dotted_name(alias.name) or "" for alias in node.names}
        elif isinstance(node, cst.ImportFrom):
            if node.relative:
                climb = max(climb, len(node.relative))
            elif node.module is not None:
                absolute.add(dotted_name(node.module) or "")
    return absolute, climb


def _ancestors(folder: str) -> list[str]:
    found = []
    while os.path.dirname(folder) != folder:
        found.append(folder)
        folder = os.path.dirname(folder)
    return found


def _is_at_or_above(folder: str, root: str) -> bool:
    """Whether `folder` is `root` or a folder above it."""
    return root == folder or root.startswith(os.path.join(folder, ""))


def _resolves_under(base: str, dotted: str) -> bool:
    """Whether `import dotted` finds a module or package in `base` (the longest prefix that is a file)."""
    path = os.path.join(base, *dotted.split("."))
    return os.path.isfile(path + ".py") or os.path.isdir(path)


def apply_builders(module: ParsedModule, function_class, with_backward: bool | tuple[str, ...] = False) -> str:
    """Code for `_agl_builders`: (label, build(shape) -> args) per call shape of `Cls.apply`, from what the
    code declares about each argument (`argument_declarations`); the runtime (inputs.py) harvests or
    searches for inputs forward accepts (and backward, `with_backward`: True, or the messages of the errors
    backward may raise, the recipe's evidence) when it rejects every declared one."""
    return "\n".join([INPUTS_IMPORT, f"_agl_builders = {shared_inputs(module, function_class, with_backward)}"])


INPUTS_IMPORT = f"from {RUNTIME_NAME} import inputs as _agl_inputs"


def shared_inputs(module: ParsedModule, function_class, with_backward: bool | tuple[str, ...] = False) -> str:
    """The expression `apply_builders` assigns (after INPUTS_IMPORT): the runtime's declared, harvested or
    searched inputs."""
    calls, origin = argument_declarations(module, function_class)
    drivers, driver_code = harvest_drivers(module, function_class)
    return (
        f"_agl_inputs.builders_for({function_class.name!r}, {function_class.name}.apply, "
        f"{calls!r}, {origin!r}, {drivers!r}, {driver_code!r}, globals(), {with_backward!r})"
    )


_DRIVER_NAME = re.compile(r"_*(test|demo|main|example|run|check|bench|smoke|sanity)", re.IGNORECASE)
MAX_DRIVERS = 5
MAX_WRAPPER_TENSORS = 4


def harvest_drivers(module: ParsedModule, function_class) -> tuple[list[tuple[str, int]], str]:
    """(the module's own functions that reach `Cls.apply`, each with the number of tensors to call it with:
    0 for those called without arguments (a test, a demo, a main, ...), then the functional wrappers that
    call it themselves with their required parameters all tensors (`def matmul(A, B, state=None)`); the
    code that defines them and what they use beyond the class's own definitions).

    The runtime runs that code and those functions with `.apply` intercepted, first in the forked child that
    looks for inputs, so whatever they do there stays there; the `__main__` block is never among them.
    """
    if module.parents.get(function_class.node) is not module.tree:
        return [], ""
    statements = [s for s in module.tree.body if not _is_main_guard(s)]
    definitions = [s for s in statements if isinstance(s, (cst.FunctionDef, cst.ClassDef))]
    reaching = {function_class.name}
    for _ in range(3):  # a wrapper, a module using it, a helper building the module
        reaching |= {s.name.value for s in definitions if _uses(s) & reaching}
    functions = [s for s in definitions if isinstance(s, cst.FunctionDef) and s.name.value != function_class.name]
    drivers = [
        (s.name.value, 0)
        for s in functions
        if _DRIVER_NAME.match(s.name.value) and not _required_parameters(s) and _uses(s) & reaching
    ]
    drivers += [
        (s.name.value, len(_required_parameters(s)))
        for s in functions
        if 0 < len(_required_parameters(s)) <= MAX_WRAPPER_TENSORS
        and not s.params.kwonly_params
        and function_class.name in _uses(s)
    ]
    drivers = drivers[:MAX_DRIVERS]
    if not drivers:
        return [], ""
    info = [(s, _binds(s), _uses(s)) for s in statements]
    own = _chosen_statements(info, {function_class.name})
    return drivers, _code_of_chosen(info, _chosen_statements(info, {name for name, _ in drivers}) - own)


def _required_parameters(function: cst.FunctionDef) -> list[str]:
    params = function.params
    return [p.name.value for p in (*params.posonly_params, *params.params, *params.kwonly_params) if p.default is None]


Declaration = dict[str, object]


def argument_declarations(module: ParsedModule, function_class) -> tuple[list[list[Declaration]], str]:
    """(per call shape of `Cls.apply`, one dict per positional argument; `call site` where a value written
    at a call site is among them, else `declared`).

    A call site gives the literals written there and the literals bound to the names written there
    (`scale = 2.0`, in the calling function or at the module's top level); without call sites,
    forward's literal defaults. Every argument also gets what forward's parameter says: its type hint
    (`int`, `float`, `bool`, `Tensor`, `Optional[...]`, jaxtyping's `Float[Tensor, "b n d"]`) and, as a
    weak hint the search starts from, a name that says index or mask.
    """
    forward = function_class.forward
    params = forward.data_params if forward is not None else []
    hints = [_parameter_hints(param) for param in params]
    shapes: list[list[Declaration]] = []
    for call in function_class.apply_calls:
        if any(arg.star or arg.keyword is not None for arg in call.args):
            continue
        shape = []
        for index, arg in enumerate(call.args):
            argument = dict(hints[index]) if index < len(hints) else {}
            argument.update(_call_site_value(module, call, arg.value))
            shape.append(argument)
        if shape not in shapes:
            shapes.append(shape)
    if shapes:
        written = any(argument["value"] is not None for shape in shapes for argument in shape)
        return shapes, "call site" if written else "declared"
    declared = [
        {**hint, "value": _literal(module, param.default) if param.default is not None else None}
        for param, hint in zip(params, hints)
    ]
    if forward is not None and isinstance(forward.node.params.star_arg, cst.Param):
        declared.append({"value": None})  # one argument for `*args`: often the tensors forward works on
    return [declared], "declared"


def _call_site_value(module: ParsedModule, call: cst.Call, expr: cst.BaseExpression) -> Declaration:
    """`value`: the literal written at the call site, or bound to the name written there (by the calling
    function or at the module's top level). A parameter of the calling function is its callers' to give:
    its numeric default says only the kind of value (a keep probability of 0.9 is one value of many)."""
    literal = _literal(module, expr)
    if literal is not None or not isinstance(expr, cst.Name):
        return {"value": literal}
    caller = module.enclosing_function(call)
    if caller is None or expr.value not in bindings(caller):
        return {"value": module_constant(module, expr.value)}
    for param in (*caller.params.params, *caller.params.kwonly_params):
        if param.name.value == expr.value:
            default = _literal(module, param.default) if param.default is not None else None
            kind = type(ast.literal_eval(default)).__name__ if default is not None else None
            if kind in _PYTHON_TYPES:
                return {"value": None, "kind": kind}
            if default == "None" and _rebinds(caller, expr.value):
                return {"value": None}  # `if n is None: n = ...`: the default is not what reaches apply
            return {"value": default}
    return {"value": literal_binding(caller, expr.value)}


def _rebinds(function: cst.FunctionDef, name: str) -> bool:
    """Whether `function`'s body assigns `name` (one of its parameters) a new value."""
    return any(
        isinstance(node, (cst.Assign, cst.AugAssign, cst.AnnAssign))
        and any(
            n.value == name
            for target in (node.targets if isinstance(node, cst.Assign) else [node])
            for n in assigned_names(target.target)
        )
        for node in walk(function.body, into_functions=False)
    )


def module_constant(module: ParsedModule, name: str) -> str | None:
    """The literal a top-level `NAME = literal` binds `name` to, when it is the module's only binding of it."""
    values = [
        small.value
        for statement in module.tree.body
        if isinstance(statement, cst.SimpleStatementLine)
        for small in statement.body
        if isinstance(small, (cst.Assign, cst.AnnAssign))
        and any(
            isinstance(target, cst.Name) and target.value == name
            for target in ([t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target])
        )
    ]
    if len(values) != 1 or values[0] is None:
        return None
    return _literal(module, values[0])


_INDEX_WORDS = frozenset({"index", "indices", "idx", "ids", "label", "labels"})
_MASK_WORDS = frozenset({"mask", "masks"})
_TENSOR_TYPES = {"Tensor": None, "LongTensor": "long", "IntTensor": "long", "BoolTensor": "bool"}
_PYTHON_TYPES = {"int": "int", "float": "float", "bool": "bool"}
# jaxtyping's dtype markers, by the dtype the harness builds for them.
_JAXTYPING_DTYPES = {
    **dict.fromkeys(("Float", "Float16", "Float32", "Float64", "Inexact", "Real", "Num", "Shaped"), "float"),
    **dict.fromkeys(("Int", "Int8", "Int16", "Int32", "Int64", "Integer", "UInt", "Long"), "long"),
    "Bool": "bool",
}


def _parameter_hints(param: cst.Param) -> Declaration:
    """What forward's parameter says about its argument: `kind`, `dtype`, `dims` (jaxtyping), `hint`."""
    found: Declaration = {}
    words = set(param.name.value.lower().split("_"))
    if words & _INDEX_WORDS:
        found["hint"] = "index"
    elif words & _MASK_WORDS:
        found["hint"] = "mask"
    if param.annotation is not None:
        found.update(_annotation_hints(_without_optional(param.annotation.annotation)))
    return found


def _without_optional(expr: cst.BaseExpression) -> cst.BaseExpression:
    """`X` for `Optional[X]`, `X | None`, `Union[X, None]`."""
    if isinstance(expr, cst.BinaryOperation) and isinstance(expr.operator, cst.BitOr):
        for side, other in ((expr.left, expr.right), (expr.right, expr.left)):
            if isinstance(other, cst.Name) and other.value == "None":
                return _without_optional(side)
    if isinstance(expr, cst.Subscript):
        base = (dotted_name(expr.value) or "").rsplit(".", 1)[-1]
        items = [e.slice.value for e in expr.slice if isinstance(e.slice, cst.Index)]
        rest = [i for i in items if not (isinstance(i, cst.Name) and i.value == "None")]
        if base in ("Optional", "Union") and len(rest) == 1:
            return _without_optional(rest[0])
    return expr


def _annotation_hints(expr: cst.BaseExpression) -> Declaration:
    if isinstance(expr, cst.Subscript):
        base = (dotted_name(expr.value) or "").rsplit(".", 1)[-1]
        items = [e.slice.value for e in expr.slice if isinstance(e.slice, cst.Index)]
        if base in _JAXTYPING_DTYPES and len(items) == 2 and isinstance(items[1], cst.SimpleString):
            return {
                "kind": "tensor",
                "dtype": _JAXTYPING_DTYPES[base],
                "dims": _jaxtyping_dims(items[1].evaluated_value),
            }
        return {}
    name = (dotted_name(expr) or "").rsplit(".", 1)[-1]
    if name in _PYTHON_TYPES:
        return {"kind": _PYTHON_TYPES[name]}
    if name in _TENSOR_TYPES:
        dtype = _TENSOR_TYPES[name]
        return {"kind": "tensor", **({"dtype": dtype} if dtype else {})}
    return {}


def _jaxtyping_dims(text: str | bytes) -> list[str | int]:
    """`"b n d"` -> ['b', 'n', 'd'], `"b 3"` -> ['b', 3]; variadic parts (`*batch`, `...`) and
    broadcastable markers are taken as no dimension and as the named one."""
    dims: list[str | int] = []
    for token in str(text).split():
        if token.startswith("*") or token == "...":
            continue
        token = token.lstrip("#_").split("=")[0] or "_"
        dims.append(int(token) if token.isdigit() else token)
    return dims


def _literal(module: ParsedModule | None, expr: cst.BaseExpression | None) -> str | None:
    """Source text of a literal (or of a module-level constant's name), else None for 'a tensor'."""
    if expr is None:
        return None
    text = code_of(expr).strip()
    try:
        ast.literal_eval(text)
        return text
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None


def literal_source(expr: cst.BaseExpression | None) -> str | None:
    """Source text of a literal argument (`2.0`, `None`, `"mean"`, `(1, 2)`), else None."""
    return _literal(None, expr)


def function_class_code(
    module: ParsedModule, function_class, closure_access: tuple[str, str, str] | None = None
) -> tuple[set[str], set[str], str]:
    """(top-level names required, names to copy if defined, code that defines the class in the harness).

    A top-level class is copied with the module's definitions. A class defined inside a function
    is rebuilt inside a factory whose local variables stand in for the enclosing function's, so its
    backward reads a real closure cell; `closure_access` is (variable, get expression, set statement)
    for the `_agl_get`/`_agl_set` the factory returns.
    """
    if module.parents.get(function_class.node) is module.tree:
        return {function_class.name}, set(), ""
    enclosing = module.enclosing_function(function_class.node)
    parent = module.parents.get(function_class.node)
    if enclosing is None or parent is None or module.parents.get(parent) is not enclosing:
        raise CannotBuildHarness(f"{function_class.name} is nested too deeply for the harness to rebuild it")
    closure_variable = closure_access[0] if closure_access else None
    free = (_free_names(function_class.node) & set(bindings(enclosing))) - {function_class.name}
    initial = {}
    for name in sorted(free):
        value = literal_binding(enclosing, name)
        if value is None and name != closure_variable:
            raise CannotBuildHarness(
                f"{function_class.name} uses `{name}` from `{enclosing.name.value}()`, whose value the harness cannot know"
            )
        if (
            value is None and closure_access is not None
        ):  # the variable under test: a container if the harness writes into it
            set_statement = closure_access[2]
            value = "[]" if ".append(" in set_statement else "{}" if "[" in set_statement else "None"
        initial[name] = value
    class_code = textwrap.indent(textwrap.dedent(code_of(function_class.node)), "    ")
    lines = ["def _agl_factory():"]
    lines += [f"    {name} = {value}" for name, value in initial.items()]
    lines.append(class_code.rstrip("\n"))
    if closure_access:
        _, get, set_ = closure_access
        lines += [
            "    def _agl_get():",
            f"        return {get}",
            "    def _agl_set(value):",
            f"        {set_}",
            f"    return {function_class.name}, _agl_get, _agl_set",
            f"{function_class.name}, _agl_get, _agl_set = _agl_factory()",
        ]
    else:
        lines += [f"    return {function_class.name}", f"{function_class.name} = _agl_factory()"]
    module_names = _uses(function_class.node) - free - {function_class.name}
    return set(), module_names, "\n".join(lines)


def recipe_harness(module: ParsedModule, function_class, recipe_call: str) -> Harness:
    """The harness most Function recipes need: the class, `_agl_builders` for its call shapes, then
    `recipe_call` (which names `<Class>.apply` and `_agl_builders`)."""
    required, optional, definition = function_class_code(module, function_class)
    main = "\n".join([definition, apply_builders(module, function_class), recipe_call])
    return Harness(required, main, optional)


def _free_names(node: cst.CSTNode) -> set[str]:
    return {n.value for n in walk(node) if isinstance(n, cst.Name)}


def literal_binding(function: cst.FunctionDef, name: str) -> str | None:
    """The literal a function binds `name` to first (an assignment or a parameter default)."""
    for param in (*function.params.params, *function.params.kwonly_params):
        if param.name.value == name and param.default is not None:
            return _literal(None, param.default)
    for node in walk(function.body, into_functions=False):
        if isinstance(node, cst.Assign) and any(
            n.value == name for t in node.targets for n in assigned_names(t.target)
        ):
            return _literal(None, node.value)
    return None


def literal_call_arguments(module: ParsedModule, callee: str) -> str | None:
    """The argument list of the first `callee(...)` call in the module whose arguments are all
    literals (`8, 4` from `BinaryLinear(8, 4)`), as source text; None if there is none."""
    for node in module.parents:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value == callee:
            parts = []
            for arg in node.args:
                value = _literal(module, arg.value)
                if value is None or arg.star:
                    break
                parts.append(f"{arg.keyword.value}={value}" if arg.keyword is not None else value)
            else:
                return ", ".join(parts)
    return None


def literal_defaults(function: cst.FunctionDef, skip: int, required_ok: bool = False) -> list[str]:
    """Literal defaults for the positional parameters after the first `skip`.

    A parameter without one raises CannotBuildHarness, unless `required_ok`: then the leading
    required ones are skipped (the harness passes tensors for them) and the rest are returned.
    """
    params = (list(function.params.posonly_params) + list(function.params.params))[skip:]
    found: list[str] = []
    for param in params:
        literal = _literal(None, param.default) if param.default is not None else None
        if literal is None:
            if required_ok and not found:
                continue
            raise CannotBuildHarness(
                f"`{function.name.value}` needs a value for `{param.name.value}`, which has no literal default"
            )
        found.append(literal)
    return found


def replay_text(module: ParsedModule, caller: CallerWrite) -> str | None:
    """For a recipe to replay: the user's statement that writes, when it is one simple statement on the
    tracked name that reads nothing else of the caller's locals (`torch.relu_(y)`, `y *= 2`), else None."""
    tracked, write = caller.tracked, caller.write
    if not (isinstance(write.target, cst.Name) and write.target.value == tracked.name) or tracked.name.endswith(
        "(...)"
    ):
        return None
    statement: cst.CSTNode | None = write.node
    while statement is not None and not isinstance(statement, cst.BaseSmallStatement):
        statement = module.parents.get(statement)
    if not isinstance(statement, (cst.Expr, cst.AugAssign, cst.Assign)):
        return None
    scope = module.enclosing_function(statement)
    if scope is not None:
        local = set(bindings(scope)) - {tracked.name}
        if any(isinstance(n, cst.Name) and n.value in local for n in walk(statement)):
            return None
    if any(isinstance(n, cst.Name) and n.value == "self" for n in walk(statement)):
        return None
    return " ".join(code_of(statement).split())


def caller_harness(module: ParsedModule, caller: CallerWrite, recipe_call: str) -> Harness:
    """The usual Function harness for a caller-side finding; `recipe_call.format(replay=...)` gives the
    recipe call, with the statement to replay (or None); the module-level names that statement reads are
    copied too."""
    replay = replay_text(module, caller)
    harness = recipe_harness(module, caller.tracked.function_class, recipe_call.format(replay=repr(replay)))
    if replay is not None:
        harness.optional_names |= {n.value for n in walk(cst.parse_statement(replay)) if isinstance(n, cst.Name)}
    return harness
