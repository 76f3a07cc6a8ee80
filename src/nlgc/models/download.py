"""Downloading released weights into a cache that follows torch.hub's conventions.

Files go to ``$NLGC_HOME/checkpoints`` if ``NLGC_HOME`` is set, else torch.hub's
``$TORCH_HOME/hub/checkpoints`` (where torchvision and timm keep theirs, so a file one of them
downloaded is found). A download streams into a temporary file in that folder, is checked
against the length the server announced and the SHA-256 prefix its name carries, and only then
is renamed into place: a cut or corrupt transfer never leaves a file under the final name.
``NLGC_WEIGHTS_MIRROR`` (or ``mirror=``) replaces the host: the file is fetched from
``<mirror>/<file name>``. timm's weights come through ``huggingface_hub`` (its own cache and
offline mode) when that package is installed and no mirror is set.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # the zoo's records name their hash rule from here
    from nlgc.models.zoo import ZooEntry

_CHUNK = 1 << 20


@dataclass(frozen=True)
class HashRule:
    """How a published file's name carries (a prefix of) its SHA-256, if it does."""

    name: str
    pattern: str | None  # a regex whose group 1 is the hex prefix; None: no hash in the name

    def prefix(self, filename: str) -> str | None:
        """The hex prefix ``filename`` carries, None without one."""
        match = re.search(self.pattern, filename) if self.pattern else None
        return match.group(1) if match else None


TORCH_HUB = HashRule("torch.hub", r"-([0-9a-f]{8,64})\.[a-z]+$")  # torch.hub's check_hash
OPENMMLAB = HashRule("openmmlab", r"-([0-9a-f]{8})\.pth$")  # mmcv's publish_model
NO_HASH = HashRule("none", None)


class WeightsUnavailable(OSError):
    """The weights could not be fetched; the message names the URL and the cache path."""


def cache_dir() -> Path:
    home = os.environ.get("NLGC_HOME")
    return Path(home) / "checkpoints" if home else Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(entry: ZooEntry) -> Path:
    """Where ``entry``'s file is (or will be) in the cache."""
    return cache_dir() / entry.filename


def fetch(entry: ZooEntry, progress: bool = True, mirror: str | None = None) -> Path:
    """The local path of ``entry``'s file, downloaded first unless cached."""
    path = cached_path(entry)
    if path.is_file():
        return path
    mirror = mirror or os.environ.get("NLGC_WEIGHTS_MIRROR")
    if entry.hf_hub and not mirror:
        with contextlib.suppress(ImportError):
            return _from_hugging_face(entry)
    url = f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url
    download(url, path, entry.sha256_prefix, progress)
    return path


def fetch_url(url: str, progress: bool = True) -> Path:
    """A URL's file in the cache (downloaded once), hash-checked where its name carries one
    as torch.hub names them."""
    filename = url.rsplit("/", 1)[-1]
    path = cache_dir() / filename
    if not path.is_file():
        download(url, path, TORCH_HUB.prefix(filename), progress)
    return path


def _from_hugging_face(entry: ZooEntry) -> Path:
    from huggingface_hub import hf_hub_download  # raises ImportError when not installed

    try:
        return Path(hf_hub_download(entry.hf_hub, "model.safetensors"))
    except Exception as error:  # offline, unreachable, not found: huggingface_hub's own types
        raise WeightsUnavailable(
            f"cannot fetch {entry.hf_hub} from the Hugging Face hub ({error}); place "
            f"{entry.url} at {cached_path(entry)} by hand, or set NLGC_WEIGHTS_MIRROR"
        ) from error


def download(url: str, path: Path, sha256_prefix: str | None, progress: bool = True) -> None:
    """``url`` → ``path``, atomically, checked against its length and ``sha256_prefix``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as out:
            digest, size, expected = _stream(url, out, progress, path)
        if expected is not None and size != expected:
            raise WeightsUnavailable(
                f"download of {url} stopped after {size} of {expected} bytes; nothing was "
                f"written to {path}"
            )
        if sha256_prefix and not digest.startswith(sha256_prefix):
            raise WeightsUnavailable(
                f"{url} has SHA-256 {digest[:16]}…, but its name says {sha256_prefix}: the "
                f"file is corrupt or not the published one; nothing was written to {path}"
            )
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _stream(url: str, out, progress: bool, path: Path) -> tuple[str, int, int | None]:
    """Copy ``url`` into the open file ``out``: (sha256 hex, bytes, announced length)."""
    sha, size = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length else None
            with _progress_bar(expected, path.name, progress) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise WeightsUnavailable(
            f"cannot download {url} ({error}); place the file at {path} by hand, or set "
            "NLGC_WEIGHTS_MIRROR to a server that has it"
        ) from error
    return sha.hexdigest(), size, expected


class _NoBar:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _progress_bar(total: int | None, name: str, show: bool):
    try:
        from tqdm import tqdm
    except ImportError:
        show = False
    if not show:
        yield _NoBar()
        return
    with tqdm(total=total, unit="B", unit_scale=True, desc=name) as bar:
        yield bar
