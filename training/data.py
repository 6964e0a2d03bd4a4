"""Read the four MNIST IDX files (gzipped or raw) from a local folder and verify them.

Every problem with the data (missing, truncated, corrupt, wrong magic, wrong checksum) is a
DataError whose message is one line naming the file and what is wrong: the CLI prints it
as-is, so a person knows which file to fix without reading a traceback.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.config import NUM_CLASSES

# SHA-256 of the DECOMPRESSED content (the .gz bytes vary with the compressor used).
SHA256: dict[str, str] = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
DOWNLOAD_TIMEOUT_S = 15.0
UNSIGNED_BYTE = 0x08  # IDX type code; MNIST stores every value as uint8
IMAGE_NDIM = 3
LABEL_NDIM = 1


class DataError(Exception):
    """A data file is missing or unusable; str() is one line naming the file."""


@dataclass(frozen=True)
class MnistSplit:
    images: np.ndarray  # (N, 28, 28) uint8, white digit on black
    labels: np.ndarray  # (N,) int64


def locate(data_dir: Path, stem: str) -> Path:
    """The file for `stem` in data_dir: `stem.gz` preferred, then the raw `stem`."""
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise DataError(
        f"{data_dir / (stem + '.gz')}: missing (neither {stem}.gz nor {stem} is in {data_dir}; "
        "pass --data-dir or set DIGITS_DATA_DIR; `train --download` fetches them)"
    )


def read_bytes(path: Path) -> bytes:
    """File content, decompressed when the name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise DataError(f"{path}: corrupt or truncated gzip data ({error})") from None
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})") from None


def parse_idx(content: bytes, path: Path, expected_ndim: int) -> np.ndarray:
    """Decode IDX bytes (magic 0x0000TTDD, then DD big-endian uint32 sizes, then the data)."""
    if len(content) < 4:
        raise DataError(f"{path}: truncated: {len(content)} bytes, not even an IDX header")
    zero, dtype_code, ndim = content[0] << 8 | content[1], content[2], content[3]
    if zero != 0 or dtype_code != UNSIGNED_BYTE or ndim != expected_ndim:
        raise DataError(
            f"{path}: wrong magic number 0x{content[:4].hex()} "
            f"(expected 0x000008{expected_ndim:02x}: uint8 IDX with {expected_ndim} dimensions)"
        )
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: truncated: header needs {header} bytes, file has {len(content)}")
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(content) != expected:
        problem = "truncated" if len(content) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {problem}: shape {shape} needs {expected} bytes, file has {len(content)}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def load_idx(
    data_dir: Path, stem: str, expected_ndim: int, sha256: str | None = None
) -> np.ndarray:
    """Locate, read, verify (sha256 of the decompressed content) and decode one IDX file."""
    path = locate(data_dir, stem)
    content = read_bytes(path)
    array = parse_idx(content, path, expected_ndim)
    expected_sha = SHA256.get(stem) if sha256 is None else sha256
    if expected_sha is not None:
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected_sha:
            raise DataError(
                f"{path}: checksum mismatch: sha256 of the decompressed content is {actual}, "
                f"expected {expected_sha}"
            )
    return array


def load_split(data_dir: Path, train: bool) -> MnistSplit:
    """The 60 000 training or 10 000 test images with their labels, verified."""
    prefix = "train" if train else "t10k"
    images = load_idx(data_dir, f"{prefix}-images-idx3-ubyte", IMAGE_NDIM)
    labels = load_idx(data_dir, f"{prefix}-labels-idx1-ubyte", LABEL_NDIM)
    if len(images) != len(labels):
        raise DataError(
            f"{data_dir}: {prefix} images ({len(images)}) and labels ({len(labels)}) differ"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataError(
            f"{data_dir}: {prefix} labels hold {int(labels.max())}, expected 0..{NUM_CLASSES - 1}"
        )
    return MnistSplit(images=images.copy(), labels=labels.astype(np.int64))


def carve_validation(
    split: MnistSplit, *, limit: int | None, val_size: int, seed: int
) -> tuple[MnistSplit, MnistSplit]:
    """(train, validation): a seeded random hold-out of the first ``limit`` images, at most
    a fifth of them. Training and the calibration after it both call this, so the
    temperature and the not-a-digit threshold are never fitted on images the model learnt."""
    if limit is not None:
        split = MnistSplit(split.images[:limit], split.labels[:limit])
    held_out = min(val_size, len(split.labels) // 5)
    order = np.random.default_rng(seed).permutation(len(split.labels))
    val_idx, train_idx = np.sort(order[:held_out]), np.sort(order[held_out:])
    return (
        MnistSplit(split.images[train_idx], split.labels[train_idx]),
        MnistSplit(split.images[val_idx], split.labels[val_idx]),
    )


def data_checksums() -> dict[str, str]:
    """The checksums the loader enforces, for the model card (what the model was trained on)."""
    return dict(SHA256)


def download(data_dir: Path, mirrors: tuple[str, ...] = MIRRORS) -> None:
    """Fetch any missing file from the public mirrors (tried in turn), verified before it lands.

    A file is written only after its decompressed content matched the checksum, so a failed or
    tampered download never leaves a file the loader would later trust.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    for stem, expected in SHA256.items():
        if (data_dir / f"{stem}.gz").is_file() or (data_dir / stem).is_file():
            continue
        failures: list[str] = []
        for mirror in mirrors:
            try:
                _fetch_verified(mirror + f"{stem}.gz", data_dir / f"{stem}.gz", expected)
                break
            except (OSError, urllib.error.URLError, DataError, ValueError) as error:
                failures.append(f"{mirror}: {getattr(error, 'reason', error)}")
        else:
            raise DataError(
                f"{data_dir / (stem + '.gz')}: download failed from every mirror "
                f"({'; '.join(failures)})"
            )


def _fetch_verified(url: str, target: Path, expected_sha: str) -> None:
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        partial = Path(scratch) / target.name
        with (
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,  # noqa: S310
            partial.open("wb") as handle,
        ):
            shutil.copyfileobj(response, handle)
        actual = hashlib.sha256(read_bytes(partial)).hexdigest()
        if actual != expected_sha:
            raise DataError(f"{url}: checksum mismatch ({actual})")
        partial.replace(target)
