"""A small AST-based mutation tester: which single-token changes of a module do its tests miss?

For one module, every mutable expression is found with :mod:`ast` and changed in turn:

=============  ======================================================================
``binop``      ``+`` ↔ ``-``, ``*`` ↔ ``/``, ``//`` → ``/``, ``**`` → ``*``
``drop``       ``a * b`` → ``a`` and → ``b``; ``a / b`` → ``a`` (drop a scale factor)
``unary``      ``-x`` → ``x``; ``not x`` → ``x``
``const``      numbers: 0 → 1, 1 → 0, 2 → 1, k → k + 1; ``True`` ↔ ``False``
``compare``    ``<`` ↔ ``<=``, ``>`` ↔ ``>=``, ``==`` ↔ ``!=``, ``is`` ↔ ``is not``,
               ``in`` ↔ ``not in``
``boolop``     ``and`` ↔ ``or``
``reduce``     ``.sum(`` ↔ ``.mean(``
``detach``     ``x.detach()`` → ``x``
``swap``       ``f(a, b)`` → ``f(b, a)`` (two positional arguments)
=============  ======================================================================

Docstrings, type annotations, f-strings and the arguments of ``raise`` (error messages) are
left alone. Each mutant replaces the source text of one expression (line numbers are kept) in a
*temporary copy* of the package, never in the working tree; the chosen test files then run in a
subprocess (``pytest -x -q -p no:cacheprovider``, no bytecode cache) with a timeout, or with
``--fork`` in a child forked from a process that imported torch, pyro and pytest once (about ten
times faster). A mutant is *killed* when the tests fail (or time out), *survived* when they pass.
Results of a run: ``benchmarks/mutation_report.md``.

Usage::

    python benchmarks/mutate.py --module pyrogen/evaluate/modes.py \\
        --tests tests/evaluate/test_modes.py --max 40 --seed 0
    python benchmarks/mutate.py --fork --module pyrogen/evaluate/modes.py  # DEFAULT_TESTS
    python benchmarks/mutate.py --module pyrogen/infer/elbo.py --list  # only list the mutants

Run from the repository root; ``--tests`` accepts anything pytest does (files, node ids).
"""

from __future__ import annotations

import argparse
import ast
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Tests run for a module when ``--tests`` is not given.
DEFAULT_TESTS = {
    "pyrogen/infer/elbo.py": [
        "tests/infer/test_elbo_estimators.py",
        "tests/infer/test_elbo_mutants.py",
    ],
    "pyrogen/infer/variance.py": [
        "tests/infer/test_variance.py",
        "tests/infer/test_variance_mutants.py",
    ],
    "pyrogen/evaluate/wasserstein.py": [
        "tests/evaluate/test_wasserstein.py",
        "tests/evaluate/test_metric_mutants.py",
    ],
    "pyrogen/evaluate/modes.py": [
        "tests/evaluate/test_modes.py",
        "tests/evaluate/test_metric_mutants.py",
    ],
    "pyrogen/evaluate/fid.py": ["tests/evaluate/test_metric_mutants.py"],
    "pyrogen/infer/advi/convergence.py": [
        "tests/infer/test_advi_diagnostics.py",
        "tests/infer/test_convergence_mutants.py",
    ],
    "pyrogen/models/latent.py": [
        "tests/models/test_latent.py",
        "tests/models/test_model_mutants.py",
    ],
    "pyrogen/models/likelihoods.py": [
        "tests/models/test_vae.py",
        "tests/models/test_model_mutants.py",
    ],
    "pyrogen/models/vae.py": ["tests/models/test_vae.py", "tests/models/test_model_mutants.py"],
    "pyrogen/infer/importance.py": [
        "tests/infer/test_importance.py",
        "tests/infer/test_iwae.py",
        "tests/infer/test_importance_mutants.py",
    ],
    "pyrogen/infer/iwae.py": [
        "tests/infer/test_iwae.py",
        "tests/infer/test_importance.py",
        "tests/infer/test_importance_mutants.py",
    ],
    "pyrogen/evaluate/likelihood.py": [
        "tests/evaluate/test_likelihood_eval.py",
        "tests/evaluate/test_likelihood_mutants.py",
    ],
    "pyrogen/infer/score.py": ["tests/infer/test_score.py", "tests/infer/test_score_mutants.py"],
    "pyrogen/train/steps/svi.py": [
        "tests/train/test_svi_step.py",
        "tests/train/test_train.py",
        "tests/train/test_resume.py",
        "tests/train/test_train_mutants.py",
    ],
    "pyrogen/train/steps/adversarial.py": [
        "tests/train/test_adversarial_step.py",
        "tests/infer/test_adversarial.py",
        "tests/train/test_resume.py",
        "tests/train/test_train_mutants.py",
    ],
    "pyrogen/train/trainer.py": [
        "tests/train/test_train.py",
        "tests/train/test_resume.py",
        "tests/train/test_callbacks.py",
        "tests/train/test_svi_step.py",
        "tests/train/test_train_mutants.py",
    ],
    "pyrogen/train/callbacks.py": [
        "tests/train/test_callbacks.py",
        "tests/train/test_train.py",
        "tests/train/test_resume.py",
        "tests/train/test_train_mutants.py",
    ],
    "pyrogen/train/checkpoint.py": [
        "tests/train/test_checkpoint.py",
        "tests/train/test_resume.py",
        "tests/train/test_callbacks.py",
        "tests/train/test_train_mutants.py",
    ],
}

_BINOP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
          ast.FloorDiv: ast.Div, ast.Pow: ast.Mult}  # fmt: skip
_CMPOP = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
          ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
          ast.NotIn: ast.In}  # fmt: skip
_REDUCE = {"sum": "mean", "mean": "sum"}


@dataclass
class Mutant:
    index: int
    kind: str
    line: int
    before: str
    after: str
    start: tuple[int, int]  # (line, col) of the replaced expression, 1-based line
    end: tuple[int, int]
    status: str = ""
    seconds: float = 0.0

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        offsets = [0]
        for text in lines:
            offsets.append(offsets[-1] + len(text.encode()))
        data = source.encode()
        a = offsets[self.start[0] - 1] + self.start[1]
        b = offsets[self.end[0] - 1] + self.end[1]
        return (data[:a] + f"({self.after})".encode() + data[b:]).decode()


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes never mutated: docstrings, annotations, f-strings, raise arguments."""
    skip: set[int] = set()

    def mark(node):
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                mark(arg.annotation)
            for arg in (node.args.vararg, node.args.kwarg):
                if arg is not None:
                    mark(arg.annotation)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, (ast.JoinedStr, ast.Raise)):
            mark(node)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
    return skip


def _copy(node: ast.AST) -> ast.AST:
    return ast.parse(ast.unparse(node), mode="eval").body


def _variants(node: ast.AST) -> list[tuple[str, ast.AST]]:
    """(kind, replacement) pairs for one node."""
    out: list[tuple[str, ast.AST]] = []
    if isinstance(node, ast.BinOp):
        is_str = any(
            isinstance(n, ast.Constant) and isinstance(n.value, str)
            for n in (node.left, node.right)
        )
        if type(node.op) in _BINOP and not is_str:
            new = _copy(node)
            new.op = _BINOP[type(node.op)]()
            out.append(("binop", new))
        if isinstance(node.op, ast.Mult):
            out += [("drop", _copy(node.left)), ("drop", _copy(node.right))]
        if isinstance(node.op, ast.Div):
            out.append(("drop", _copy(node.left)))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append(("unary", _copy(node.operand)))
    elif isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool):
            out.append(("const", ast.Constant(not v)))
        elif isinstance(v, (int, float)):
            new = {0: 1, 1: 0, 2: 1}.get(v, v + 1)
            out.append(("const", ast.Constant(type(v)(new))))
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOP:
        new = _copy(node)
        new.ops = [_CMPOP[type(node.ops[0])]()]
        out.append(("compare", new))
    elif isinstance(node, ast.BoolOp):
        new = _copy(node)
        new.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        out.append(("boolop", new))
    elif isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _REDUCE:
            new = _copy(node)
            new.func.attr = _REDUCE[func.attr]
            out.append(("reduce", new))
        if isinstance(func, ast.Attribute) and func.attr == "detach" and not node.args:
            out.append(("detach", _copy(func.value)))
        args = node.args
        if len(args) == 2 and not any(isinstance(a, ast.Starred) for a in args):
            if ast.unparse(args[0]) != ast.unparse(args[1]):
                new = _copy(node)
                new.args = [new.args[1], new.args[0]]
                out.append(("swap", new))
    return out


def find_mutants(source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    mutants: list[Mutant] = []
    for node in ast.walk(tree):
        if id(node) in skip or not hasattr(node, "lineno") or node.end_lineno is None:
            continue
        for kind, new in _variants(node):
            before, after = ast.unparse(node), ast.unparse(new)
            if before == after:
                continue
            mutants.append(
                Mutant(
                    index=0,
                    kind=kind,
                    line=node.lineno,
                    before=before,
                    after=after,
                    start=(node.lineno, node.col_offset),
                    end=(node.end_lineno, node.end_col_offset),
                )
            )
    mutants.sort(key=lambda m: (m.start, m.end, m.kind, m.after))
    for i, m in enumerate(mutants):
        m.index = i
    return mutants


def _status(code: int) -> str:
    if code == 0:
        return "survived"
    if code in (1, 2):  # tests failed, or collection/import error
        return "killed"
    return f"error {code}"


def _run_tests(workdir: Path, tests: list[str], timeout: float) -> str:
    env = dict(os.environ, PYTHONPATH=str(workdir), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return _status(result.returncode)


def _preload() -> None:
    """Import the heavy dependencies once, in this process, before forking (never pyrogen)."""
    import numpy  # noqa: F401
    import pyro  # noqa: F401
    import pytest  # noqa: F401
    import scipy.stats  # noqa: F401
    import torch  # noqa: F401

    assert not any(name.startswith("pyrogen") for name in sys.modules)


def _run_tests_forked(workdir: Path, tests: list[str], timeout: float) -> str:
    """As :func:`_run_tests`, in a forked child that imports the (mutated) package afresh."""
    pid = os.fork()
    if pid == 0:  # child
        code = 3
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            os.chdir(workdir)
            sys.path.insert(0, str(workdir))
            sys.dont_write_bytecode = True
            import pytest

            code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *tests]))
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return _status(os.waitstatus_to_exitcode(status))
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return "timeout"
        time.sleep(0.02)


def _short(text: str, width: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--module", required=True, help="module path, e.g. pyrogen/infer/elbo.py")
    parser.add_argument("--tests", nargs="+", help="test files / node ids (default: a map)")
    parser.add_argument("--max", type=int, default=0, help="at most this many mutants (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max subsample")
    parser.add_argument("--kinds", nargs="+", help="only these mutation kinds")
    parser.add_argument("--lines", help="only mutants on lines A-B")
    parser.add_argument("--only", type=int, nargs="+", help="only these mutant indices")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per test run")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--markdown", help="append the table to this file")
    parser.add_argument(
        "--fork",
        action="store_true",
        help="import torch/pyro/pytest once and fork a child per mutant (faster; POSIX only)",
    )
    args = parser.parse_args(argv)

    module = Path(args.module)
    source = (ROOT / module).read_text()
    mutants = find_mutants(source)
    total = len(mutants)
    if args.kinds:
        mutants = [m for m in mutants if m.kind in args.kinds]
    if args.lines:
        lo, hi = (int(v) for v in args.lines.split("-"))
        mutants = [m for m in mutants if lo <= m.line <= hi]
    if args.only:
        mutants = [m for m in mutants if m.index in set(args.only)]
    if args.max and len(mutants) > args.max:
        mutants = sorted(random.Random(args.seed).sample(mutants, args.max), key=lambda m: m.index)
    if args.list:
        for m in mutants:
            print(f"{m.index:4d}  L{m.line:<4d} {m.kind:8s} {_short(m.before, 45):45s} -> "
                  f"{_short(m.after, 45)}")  # fmt: skip
        print(f"{len(mutants)} of {total} mutants")
        return 0
    tests = args.tests or DEFAULT_TESTS.get(str(module))
    if not tests:
        parser.error(f"no --tests given and no default tests for {module}")
    missing = [t for t in tests if not (ROOT / t.split("::")[0]).exists()]
    tests = [t for t in tests if t not in missing]
    if missing:
        print(f"skipping missing test files: {', '.join(missing)}")
    if not tests:
        parser.error(f"none of the test files of {module} exist")

    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        work = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
        for name in ("pyrogen", "tests"):
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
        for name in ("pyproject.toml", "conftest.py"):
            if (ROOT / name).exists():
                shutil.copy2(ROOT / name, work / name)
        target = work / module
        run = _run_tests
        if args.fork:
            _preload()
            run = _run_tests_forked
        start = time.perf_counter()
        baseline = run(work, tests, args.timeout * 3)
        print(f"baseline ({time.perf_counter() - start:.1f} s): {baseline}", flush=True)
        if baseline != "survived":
            print("The tests fail on the unmutated module; fix them first.", file=sys.stderr)
            return 2
        for m in mutants:
            mutated = m.apply(source)
            try:
                compile(mutated, str(module), "exec")
            except SyntaxError as error:  # a bug of this script, not of the module
                m.status = f"invalid ({error.msg})"
                continue
            target.write_text(mutated)
            t0 = time.perf_counter()
            try:
                m.status = run(work, tests, args.timeout)
            finally:
                target.write_text(source)
            m.seconds = time.perf_counter() - t0
            print(f"{m.index:4d} L{m.line:<4d} {m.kind:8s} {m.status:9s} {m.seconds:5.1f}s  "
                  f"{_short(m.before, 40)} -> {_short(m.after, 40)}", flush=True)  # fmt: skip

    killed = sum(m.status in ("killed", "timeout") for m in mutants)
    survivors = [m for m in mutants if m.status == "survived"]
    lines = [
        f"### `{module}`",
        "",
        f"Tests: {', '.join(f'`{t}`' for t in tests)}. Mutants: {total} found, {len(mutants)} run,"
        f" {killed} killed, {len(survivors)} survived"
        + (
            f", {len(mutants) - killed - len(survivors)} other"
            if killed + len(survivors) < len(mutants)
            else ""
        )  # fmt: skip
        + ".",
        "",
    ]
    if survivors:
        lines += ["| # | line | kind | original | mutant |", "|---|---|---|---|---|"]
        for m in survivors:
            before, after = _short(m.before, 50), _short(m.after, 50)
            lines.append(f"| {m.index} | {m.line} | {m.kind} | `{before}` | `{after}` |")
        lines.append("")
    table = "\n".join(lines)
    print()
    print(table)
    if args.markdown:
        with open(args.markdown, "a") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
