"""Which files to send: the paths given, folders searched recursively for images."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

# The formats the service accepts by default (DIGITS_ALLOWED_IMAGE_FORMATS). A file named
# explicitly is sent whatever its name: the service, not the extension, decides.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff"})
# What ``digits predict --explain`` writes: a folder scanned again is not sent its heat maps.
HEAT_MAP_SUFFIX = ".why.png"


class NoSuchPath(Exception):
    """A path given on the command line does not exist."""


def images_in(folder: Path) -> list[Path]:
    """Entries under ``folder`` at any depth named like images, sorted; hidden files and
    folders skipped. Any such entry but a folder is kept, not only regular files: a named
    pipe, a device or a broken symlink then fails its own row, as it does when named, instead
    of vanishing from the run without a word (client.api neither waits on a pipe nor reads
    a device past its MAX_FILE_BYTES). A folder that cannot be listed is kept too, to fail
    its own row (Path.rglob dropped it in silence), and a link to a folder is followed once:
    after every real folder, so a file keeps its own name rather than a link's."""
    found: list[Path] = []
    folders: list[Path] = [folder]
    linked: list[Path] = []  # links to folders, followed after every real folder
    scanned: set[str] = set()  # real paths: a link back up the tree is not a loop
    while folders or linked:
        current = folders.pop() if folders else linked.pop()
        real = os.path.realpath(current)
        if real in scanned:
            continue
        scanned.add(real)
        try:
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError:
            found.append(current)
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if _entry_is_dir(entry):
                (linked if entry.is_symlink() else folders).append(path)
            elif _named_like_an_image(entry.name):
                found.append(path)
    return sorted(found)


def _entry_is_dir(entry: os.DirEntry[str]) -> bool:
    """The listing's own word for a folder (no stat: inside a folder that may be read but not
    entered, a stat of what it holds fails, and such a subfolder vanished from the scan);
    a link is followed, which needs a stat: one that fails is no folder."""
    try:
        return entry.is_dir()
    except OSError:
        return False


def _named_like_an_image(name: str) -> bool:
    lowered = name.lower()
    return Path(lowered).suffix in IMAGE_EXTENSIONS and not lowered.endswith(HEAT_MAP_SUFFIX)


def _is_dir(path: Path) -> bool:
    """False for a broken or looping symlink, and for a path the system will not look at (a
    name too long, a folder on the way it may not enter): such a path fails its own row when
    read, rather than ending the run in a traceback."""
    try:
        return path.is_dir()
    except OSError:
        return False


def collect(paths: Iterable[Path]) -> list[Path]:
    """Files to send, in the order given, each once; raises NoSuchPath for a name that is not
    there at all (a typo is a usage error, a link to nothing is a file that cannot be read)."""
    found: list[Path] = []
    seen: dict[Path, int] = {}  # real path -> its place in ``found``
    for path in paths:
        if _is_dir(path):
            candidates = images_in(path)
        elif _there(path):
            candidates = [path]  # a broken link fails its own row, as in a folder scan
        else:
            raise NoSuchPath(f"no such file or folder: {path}")
        for candidate in candidates:
            # Not Path.resolve: it raises on a symlink loop, which must fail its own row.
            key = Path(os.path.realpath(candidate))
            if key not in seen:
                seen[key] = len(found)
                found.append(candidate)
            elif _is_link(found[seen[key]]) and not _is_link(candidate):
                found[seen[key]] = candidate  # the file under its own name, not a link's
    return found


def _is_link(path: Path) -> bool:
    try:
        return path.is_symlink()
    except OSError:  # a name too long: not a link it can tell
        return False


def _there(path: Path) -> bool:
    """Whether anything is at ``path`` (a broken link included); True when the system will
    not say (a name too long, a folder it may not enter): the row then says why."""
    try:
        return path.exists() or path.is_symlink()
    except OSError:
        return True
