"""Writing checkpoints so that a failed write (a kill, a full disk) never costs the checkpoint already there.

Lightning's TorchCheckpointIO writes through fsspec, which puts its temporary file in TMPDIR and moves it into place:
when TMPDIR is on another file system than the run, the move is a copy, and a kill during it leaves a truncated
`last.ckpt` (and the temporary file). Here the temporary file lies beside its destination, is flushed and fsynced,
and is renamed over it (os.replace, atomic on one file system); a write that fails removes it and says so in one
line (CheckpointError).
"""

import errno
import io
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import torch
from fsspec.utils import get_protocol
from lightning.fabric.plugins.io.checkpoint_io import CheckpointIO
from lightning.pytorch.plugins.io import TorchCheckpointIO

from makemore.errors import CheckpointError

# The errors of a disk that cannot take the bytes: no space, or no quota left.
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


def write_error(folder: Path, what: str, err: OSError) -> str:
    """One line for a write into `folder` that failed: what was written and why (no space or quota left, ...)."""
    reason = "no space left on its device" if err.errno in NO_SPACE else err.strerror or str(err)
    return f"{folder}: cannot write {what} there: {reason}"


def no_space_left(folder: Path) -> bool:
    """Whether the disk of `folder` has no byte left for an unprivileged write (a full disk, or quota)."""
    return shutil.disk_usage(folder).free == 0


def temporary_path(path: Path) -> Path:
    """Where a checkpoint is written before it replaces `path`: a hidden file beside it (`.last.ckpt.tmp`), on the
    same file system, so that the rename is atomic. A kill during a write can leave it; the next write replaces it."""
    return path.with_name(f".{path.name}.tmp")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (a crash after it keeps the new name); where folders cannot be opened,
    as on Windows, the rename alone must do."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(descriptor)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save to a temporary file beside the checkpoint, flushed and fsynced, then renamed over it.

    A kill or a full disk during the write leaves the previous checkpoint of that name as it was; a failed write
    removes its temporary file and raises CheckpointError naming the folder. Remote paths (s3://, ...) go to
    Lightning's own writing.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Optional[Any] = None) -> None:
        if storage_options is not None or get_protocol(str(path)) != "file":
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        buffer = io.BytesIO()  # serialised first: a write error is then an OSError of the file, not torch's
        torch.save(checkpoint, buffer)
        temporary = temporary_path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(temporary, "wb") as file:
                file.write(buffer.getbuffer())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except OSError as err:
            temporary.unlink(missing_ok=True)
            raise CheckpointError(
                write_error(path.parent, f"the checkpoint {path.name}", err)
                + "; the checkpoints already there are kept"
            ) from None
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _fsync_folder(path.parent)


def with_atomic_checkpoints(plugins: Any) -> list:
    """The trainer's `plugins` (one, a list, or None) plus AtomicCheckpointIO, unless they hold a CheckpointIO."""
    plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins] if plugins is not None else []
    if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
        plugins.append(AtomicCheckpointIO())
    return plugins
