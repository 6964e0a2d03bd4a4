"""Assemble the runtime image's whole filesystem: only what the service loads.

    python3 rootfs.py ROOT VENV

Run in a build stage of the Dockerfile on the base image (Debian's python3 or python:*-slim),
after the virtual environment VENV was installed from the lock. Into ROOT it copies:

- the Python interpreter and its standard library, minus what a server never imports
  (test suites, IDLE, tkinter, 2to3, pydoc's data, ensurepip, the base's own pip);
- VENV, minus the parts of packages the service never loads (PRUNED below, with sizes);
- a few tools for operators (a shell, ls, cat, id, sleep: `kubectl exec`, a preStop sleep);
- exactly the shared libraries all of these link, found with ldd: a library the service
  needs can never be missing, because the build fails when ldd cannot find one;
- /etc/passwd and /etc/group (the service's user), /etc/os-release, an empty /tmp, and a
  dpkg status entry for every Debian package a copied file came from, so image scanners
  still see exactly which packages are inside.

No package manager, no compilers, no perl, no locales, no docs: on the local Debian base this
takes the image from a 183 MB base plus the venv to about a fifth of that base plus a pruned
venv (docs/performance.md, "The image"). The service's answers do not change: the same
files of the same packages are loaded, the others are absent.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

# Standard-library directories and extension modules a server never imports.
STDLIB_UNUSED = {
    "test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
    "distutils", "site-packages", "dist-packages", "__phello__",
}  # fmt: skip
DYNLOAD_UNUSED = (
    "_test", "_xxtest", "xxlimited", "_ctypes_test", "_sqlite3", "_dbm", "_gdbm", "_curses",
    "readline", "_tkinter", "nis", "ossaudiodev", "audioop",
)  # fmt: skip
# Parts of installed packages the service never loads (site-packages relative; measured in
# the image with onnxruntime 1.32, opencv-python-headless 5.0, pillow 13, numpy 2.4).
PRUNED = (
    # ONNX Runtime's C API library (35 MB): the Python binding has the runtime linked in.
    "onnxruntime/capi/libonnxruntime.so.*",
    # Model conversion, quantisation and transformer-fusion tools (9 MB).
    "onnxruntime/transformers", "onnxruntime/quantization", "onnxruntime/tools",
    # protobuf (3 MB): only those tools import it.
    "google", "protobuf-*.dist-info",
    # Pillow's AVIF codec (5 MB; AVIF is not an accepted format), fonts and colour
    # management (3 MB): decoding never loads them.
    "PIL/_avif.*", "pillow.libs/libavif-*", "PIL/_imagingft.*", "pillow.libs/libfreetype-*",
    "pillow.libs/libharfbuzz-*", "pillow.libs/libbrotli*", "PIL/_imagingcms.*",
    "pillow.libs/liblcms2-*",
    # C headers, the Fortran wrapper generator and the SIMD test module of numpy.
    "numpy/_core/include", "numpy/f2py", "numpy/_pyinstaller", "numpy/_core/_simd.*",
    # Type stubs, and test suites wherever they are.
    "**/*.pyi", "**/tests",
)  # fmt: skip
REQUIRED_FORMATS = {"PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"}  # settings.KNOWN_IMAGE_FORMATS
TOOLS = ("sh", "ls", "cat", "id", "sleep")
ETC = ("/etc/passwd", "/etc/group", "/etc/os-release")


class Tree:
    """Copies paths from / into ``root`` at the same place, symlinks included."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.placed: set[str] = set()

    def target(self, path: Path) -> Path:
        return self.root / path.relative_to("/")

    def place(self, path: Path) -> None:
        """``path`` and every symlink on its way (a directory symlink as a link only)."""
        if str(path) in self.placed or path == Path("/"):
            return
        self.placed.add(str(path))
        for parent in reversed(path.parents):
            if parent.is_symlink():
                self.place(parent)
        target = self.target(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            link = os.readlink(path)
            if not target.is_symlink():
                target.symlink_to(link)
            resolved = Path(link) if os.path.isabs(link) else path.parent / link
            if resolved.is_dir():
                self.target(Path(os.path.realpath(resolved))).mkdir(parents=True, exist_ok=True)
            else:
                self.place(Path(os.path.normpath(resolved)))
        elif path.is_dir():
            shutil.copytree(path, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(path, target)

    def copy_tree(self, source: Path, skip: set[str]) -> None:
        """``source`` recursively, without the entries named in ``skip`` at its top."""
        for entry in source.iterdir():
            if entry.name in skip:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.copytree(entry, self.target(entry), symlinks=True, dirs_exist_ok=True)
            else:
                self.place(entry)


def linked_libraries(binary: Path) -> set[Path]:
    """Every shared library ``binary`` loads (ldd: the whole closure). Fails on a missing one."""
    done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
    if "not a dynamic executable" in done.stdout + done.stderr:
        return set()
    libraries = set()
    for line in done.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise SystemExit(f"{binary}: {line}")
        path = line.split("=>")[-1].split("(")[0].strip()
        if path.startswith("/"):
            libraries.add(Path(path))
    return libraries


def is_elf(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"\x7fELF"


def prune(site_packages: Path) -> None:
    for pattern in PRUNED:
        for path in sorted(site_packages.glob(pattern), reverse=True):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()


def strip_debug_info(venv: Path) -> None:
    """Remove the debug sections some wheels ship (uvloop's 14 MB module is 12 MB of them);
    code and symbol tables stay as they are. Needs binutils (a build-stage tool). Files
    auditwheel rewrote with patchelf (bundled ``*.libs``, anything with an RPATH) are left
    alone: strip breaks their layout ("ELF load command address/offset not page-aligned")."""
    strip, readelf = shutil.which("strip"), shutil.which("readelf")
    if strip is None or readelf is None:
        return
    for path in venv.rglob("*.so*"):
        if not path.is_file() or not is_elf(path) or path.parent.name.endswith(".libs"):
            continue
        if b".debug_info" not in path.read_bytes():
            continue
        dynamic = subprocess.run([readelf, "-d", str(path)], capture_output=True, text=True)
        if "(RPATH)" in dynamic.stdout or "(RUNPATH)" in dynamic.stdout:
            continue
        subprocess.run([strip, "--strip-debug", str(path)], check=True)


def check_imports(venv: Path) -> None:
    """Import every package left in ``venv`` (and Pillow's format plugins) with the copied
    interpreter: a pruned or stripped file the service needs fails the build, not a request."""
    (site_packages,) = venv.glob("lib/python*/site-packages")
    names = sorted(
        entry.name.split(".")[0]
        for entry in site_packages.iterdir()
        if (entry / "__init__.py").exists() or entry.suffix in (".py", ".so")
    )
    names = [name for name in names if not name.startswith("_")]
    code = (
        "import importlib, sys; [importlib.import_module(n) for n in sys.argv[1:]]; "
        "from PIL import Image; Image.init(); "
        f"missing = {sorted(REQUIRED_FORMATS)!r} - Image.OPEN.keys(); "
        "assert not missing, f'Pillow cannot open {missing}'"
    )
    subprocess.run([str(venv / "bin" / "python"), "-c", code, *names], check=True)


def record_packages(root: Path, files: list[Path]) -> None:
    """/var/lib/dpkg/status.d/<package> for the Debian packages ``files`` came from: what
    image scanners read where there is no dpkg database."""
    if shutil.which("dpkg-query") is None:
        return
    packages = set()
    for path in files:
        # dpkg may know a file by its pre-usrmerge path (/bin/dash for /usr/bin/dash).
        names = {str(path), os.path.realpath(path)}
        names |= {name.removeprefix("/usr") for name in names if name.startswith("/usr/")}
        for name in sorted(names):
            found = subprocess.run(["dpkg-query", "-S", name], capture_output=True, text=True)
            for line in found.stdout.splitlines():  # "pkg[, pkg]: path", or a diversion
                owners, _, _ = line.partition(": ")
                if not line.startswith("diversion "):
                    packages.update(owner.split(":")[0] for owner in owners.split(", "))
    status = root / "var/lib/dpkg/status.d"
    status.mkdir(parents=True, exist_ok=True)
    for package in sorted(packages):
        stanza = subprocess.run(
            ["dpkg-query", "-s", package], capture_output=True, text=True, check=True
        ).stdout
        (status / package.replace("/", "_")).write_text(stanza)


def main(root: Path, venv: Path) -> None:
    tree = Tree(root)
    for top in ("bin", "sbin", "lib", "lib64"):  # usrmerge links, as on the base
        if Path(f"/{top}").is_symlink():
            tree.place(Path(f"/{top}"))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    tree.copy_tree(stdlib, STDLIB_UNUSED | {f"config-{sysconfig.get_python_version()}"})
    # Bases that ship no bytecode (python:*-slim deletes it) get it here: a read-only root
    # would otherwise compile the standard library in memory at every start of every process.
    compile_args = ["-q", "-j", "0", "-s", str(root), "-p", "/", str(tree.target(stdlib))]
    subprocess.run([sys.executable, "-m", "compileall", *compile_args], check=True)
    dynload = Path(sysconfig.get_paths()["platstdlib"]) / "lib-dynload"
    for module in tree.target(dynload).glob("*.so"):
        if module.name.startswith(DYNLOAD_UNUSED):
            module.unlink()
    executable = Path(sys.executable)
    tree.place(executable)
    for name in ("python3", f"python{sysconfig.get_python_version()}"):
        if (executable.parent / name).exists():
            tree.place(executable.parent / name)
    for path in map(Path, ETC):
        if path.exists():
            tree.place(path)
    shutil.copytree(venv, tree.target(venv), symlinks=True)
    for site_packages in tree.target(venv).glob("lib/python*/site-packages"):
        prune(site_packages)
    strip_debug_info(tree.target(venv))
    check_imports(tree.target(venv))
    tools = [Path(found) for name in TOOLS if (found := shutil.which(name))]
    for tool in tools:
        tree.place(tool)
    binaries = [Path(os.path.realpath(executable)), *tools]
    binaries += [path for path in root.rglob("*.so*") if path.is_file() and is_elf(path)]
    libraries = {
        library
        for binary in binaries
        for library in linked_libraries(binary)
        if not library.is_relative_to(root)  # bundled with a package in the venv: there
    }
    for library in sorted(libraries):
        tree.place(library)
    stdlib_files = [stdlib / "os.py", stdlib / "asyncio" / "__init__.py"]
    record_packages(root, [executable, *stdlib_files, *tools, *sorted(libraries)])
    (root / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (root / "tmp").chmod(0o1777)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
