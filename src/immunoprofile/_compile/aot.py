"""Kernels compiled ahead of time, so that a command can gate a batch without Numba.

Every process that runs a Numba kernel first imports Numba and sets up its compiler (about
0.6 s on the project's machines, cached machine code or not) — longer than gating a batch
of 60 tubes takes. ``numba.pycc`` compiles the same Python source, with the same compiler,
into an ordinary extension module whose import takes a millisecond. The modules live in
the kernel cache (``kernels/`` under ``$IMMUNOPROFILE_CACHE``, else
``~/.cache/immunoprofile``), one per set of kernels and argument types, named by a digest
of the code they were built from, the Numba and NumPy installations they were built with
and this machine's processor (they are built for it: a cache shared between different
machines holds one module each).

A missing module is built only where :func:`allow_builds` was called — the command line
does, once per machine and kernel set, saying so — and otherwise the Numba kernel is used
just in time, as before. A build that fails (no C compiler, no setuptools) is remembered
next to where the module would be (``<name>.failed``, with the reason) and not retried;
the just-in-time kernels serve instead. Both give the same answers: the same source, the
same compiler options.

This module imports Numba only to build.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import sys
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

_LOADED: dict[str, ModuleType | None] = {}
_LOCK = threading.Lock()
_BUILDS = {"allowed": False, "notify": None}


def cache_root() -> Path:
    """The kernel cache's root: ``$IMMUNOPROFILE_CACHE``, else ``~/.cache/immunoprofile``
    (``$XDG_CACHE_HOME`` respected)."""
    env = os.environ.get("IMMUNOPROFILE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "immunoprofile"


def kernel_dir() -> Path:
    """Where generated and ahead-of-time compiled kernels are kept."""
    return cache_root() / "kernels"


def allow_builds(notify: Callable[[str], None] | None = None) -> None:
    """Build missing modules from now on in this process (the command line calls this).

    Parameters
    ----------
    notify : callable, optional
        Called with a one-line message before each build (it takes seconds).
    """
    _BUILDS["allowed"] = os.environ.get("IMMUNOPROFILE_AOT", "") != "off"
    _BUILDS["notify"] = notify


def builds_allowed() -> bool:
    """Whether this process builds missing modules (see :func:`allow_builds`)."""
    return bool(_BUILDS["allowed"])


def enabled() -> bool:
    """False when ``IMMUNOPROFILE_AOT=off``: only just-in-time kernels are used."""
    return os.environ.get("IMMUNOPROFILE_AOT", "") != "off"


def _stamp(package: str) -> str:
    """Where a package is installed and when it was (without importing it)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return f"{package}:absent"
    stat = os.stat(spec.origin)
    return f"{spec.origin}:{stat.st_size}:{stat.st_mtime_ns}"


_MACHINE: list[str] = []


def machine_key() -> str:
    """This interpreter and processor (modules are built for the host's instruction set)."""
    if not _MACHINE:
        cpu = platform.processor()
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith(("flags", "model name", "Features", "CPU part")):
                    cpu += line
                if line.strip() == "":
                    break  # the first processor is enough
        _MACHINE.append("\x00".join([sys.version, platform.machine(), platform.system(), cpu,
                                     _stamp("numba"), _stamp("llvmlite"), _stamp("numpy")]))
    return _MACHINE[0]


def module_name(kind: str, *parts: str) -> str:
    """Name of the module of one kernel set: ``ipk_<kind>_<digest>``."""
    digest = hashlib.sha256("\x00".join((kind, machine_key()) + parts).encode()).hexdigest()
    return f"ipk_{kind}_{digest[:24]}"


def _path(name: str) -> Path:
    return kernel_dir() / (name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so"))


def load(name: str) -> ModuleType | None:
    """The built module ``name``, or None (not built, or not loadable here)."""
    if name in _LOADED:
        return _LOADED[name]
    module = None
    path = _path(name)
    if enabled() and path.exists():
        try:
            loader = importlib.machinery.ExtensionFileLoader(name, str(path))
            spec = importlib.util.spec_from_file_location(name, path, loader=loader)
            module = importlib.util.module_from_spec(spec)
            loader.exec_module(module)
        except (ImportError, OSError):
            module = None
    _LOADED[name] = module
    return module


def load_or_build(name: str, exports: Callable[[], Sequence[tuple[str, Callable, object]]],
                  what: str) -> ModuleType | None:
    """The module ``name``, built first when missing and builds are allowed.

    Parameters
    ----------
    name : str
        From :func:`module_name`.
    exports : callable
        Returns ``[(symbol, python function, numba signature), ...]``; called only to build
        (it may import Numba).
    what : str
        What the module holds, for the build notice ("the NK tube's gating kernel").
    """
    module = load(name)
    if module is not None or not _BUILDS["allowed"]:
        return module
    with _LOCK:
        module = _LOADED.get(name)
        if module is not None:
            return module
        _LOADED.pop(name, None)
        failed = _path(name).with_suffix(".failed")
        if failed.exists():
            return None
        folder = kernel_dir()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return None
        with _file_lock(folder / f"{name}.lock"):
            module = load(name) if _path(name).exists() else None
            if module is None:
                _LOADED.pop(name, None)
                notify = _BUILDS["notify"]
                if notify is not None:
                    notify(f"compiling {what} for this machine (once; it takes a few seconds)")
                try:
                    _build(name, exports())
                except Exception as exc:  # any build failure: use the JIT
                    with contextlib.suppress(OSError):
                        failed.write_text(f"{type(exc).__name__}: {exc}\n")
                    _LOADED[name] = None
                    return None
                module = load(name)
    return module


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock between processes (released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent builds only waste time (renames are atomic)
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(name: str, exports: Sequence[tuple[str, Callable, object]]) -> None:
    """Compile ``exports`` with numba.pycc into ``kernel_dir()/name`` (atomically)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice, setuptools'
        from numba.pycc import CC
        from numba.pycc import compiler as pycc_compiler

        class _ReleasingFlags(pycc_compiler.Flags):
            """pycc's compiler flags, releasing the GIL in each exported function's wrapper
            as ``nogil=True`` does for a jitted one (the kernels touch no Python object),
            so that a batch's threads gate side by side."""

            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                self.release_gil = True

        build_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=kernel_dir()))
        try:
            cc = CC(name)
            cc.output_dir = str(build_dir)
            cc.target_cpu = "host"
            cc.verbose = False
            for symbol, function, signature in exports:
                cc.export(symbol, signature)(function)
            flags = pycc_compiler.Flags
            pycc_compiler.Flags = _ReleasingFlags
            try:
                with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
                    cc.compile()
            finally:
                pycc_compiler.Flags = flags
            (built,) = build_dir.glob(f"{name}*")
            os.replace(built, _path(name))
        finally:
            for leftover in build_dir.glob("*"):
                leftover.unlink(missing_ok=True)
            build_dir.rmdir()


#: One argument of a compiled signature: a dtype (None for an int), dimensions, whether
#: the kernel only reads it, and optionally ``"A"``: any strides and alignment (else
#: C-contiguous and aligned).
ArgSpec = tuple


def check_arguments(args: Sequence, spec: Sequence[ArgSpec]) -> bool:
    """Whether ``args`` have exactly the types a compiled signature expects.

    An ahead-of-time compiled function does not check the arrays it is given (a wrong
    dtype reads memory as another type), so every call is checked first.

    Parameters
    ----------
    args : sequence
        The arguments.
    spec : sequence of :data:`ArgSpec`
        Per argument: the dtype (None: a Python int), the dimensions, whether it is only
        read (output arrays must be writable), and ``"A"`` where any strides are allowed.
    """
    for arg, (dtype, ndim, read_only, *layout) in zip(args, spec, strict=True):
        if dtype is None:
            if type(arg) is not int:
                return False
        elif (getattr(arg, "ndim", -1) != ndim or arg.dtype != dtype
              or not (layout == ["A"] or (arg.flags.c_contiguous and arg.flags.aligned))
              or not (read_only or arg.flags.writeable)):
            return False
    return True


def signature(result: ArgSpec, args: Sequence[ArgSpec]):
    """The Numba signature of a spec (imports Numba: for builds only)."""
    from numba import types
    from numba.np.numpy_support import from_dtype

    def one(dtype, ndim, read_only, layout="C"):
        if dtype is None:
            return types.int64
        # "A": any strides, possibly unaligned (the channel-pair view of the events)
        return types.Array(from_dtype(dtype), ndim, layout, readonly=read_only,
                           aligned=layout == "C")

    return one(*result)(*(one(*a) for a in args))


def argument_spec(args: Sequence, outputs: Sequence[int] = ()) -> tuple | None:
    """The :data:`ArgSpec` of each argument, or None when one cannot be passed to a
    compiled function (not an int or a native array; an output not C-contiguous)."""
    spec = []
    for i, arg in enumerate(args):
        if type(arg) is int:
            spec.append((None, 0, True))
            continue
        flags = getattr(arg, "flags", None)
        if flags is None or not arg.dtype.isnative or arg.dtype.kind not in "biuf":
            return None
        if flags.c_contiguous and flags.aligned:
            spec.append((arg.dtype, arg.ndim, i not in outputs))
        elif i in outputs:
            return None
        else:  # strided, or mapped at an odd offset in its file
            spec.append((arg.dtype, arg.ndim, True, "A"))
    return tuple(spec)


def forwarder(target, n_args: int):
    """A plain function of ``n_args`` arguments that calls the jitted ``target``: pycc
    compiles it, and ``target`` keeps its own options (NumPy's error model, inlining)."""
    names = ", ".join(f"a{i}" for i in range(n_args))
    namespace = {"target": target}
    exec(f"def forward({names}):\n    return target({names})\n", namespace)
    return namespace["forward"]


def compiled(kind: str, key: Sequence[str], target: Callable[[], object], args: Sequence,
             outputs: Sequence[int], result: ArgSpec, what: str) -> Callable | None:
    """An ahead-of-time compiled twin of a jitted kernel for these argument types, or None.

    Parameters
    ----------
    kind : str
        Short name of the kernel set (part of the module's name).
    key : sequence of str
        What the kernel's code depends on (its source, digests of what it calls).
    target : callable
        Returns the jitted kernel (a Numba dispatcher); called only to build.
    args : sequence
        The call's arguments: their types choose the module.
    outputs : sequence of int
        Positions of the arrays the kernel writes.
    result : ArgSpec
        The kernel's return type.
    what : str
        For the build notice.
    """
    if not enabled():
        return None
    spec = argument_spec(args, outputs)
    if spec is None:
        return None
    name = module_name(kind, *key, repr(spec))
    module = load_or_build(
        name, lambda: [("run", forwarder(target(), len(args)), signature(result, spec))],
        what)
    return None if module is None else module.run
