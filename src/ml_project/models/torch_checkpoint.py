"""The per-epoch training state a killed run resumes from: save, load, fingerprint.

A checkpoint holds tensors and plain containers only, and is read with
`torch.load(weights_only=True)`: a crafted file cannot run code (tests/test_security.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

VERSION = 1


def fingerprint(params: dict[str, Any], arrays: list[np.ndarray | None], world: int) -> str:
    """What a checkpoint must match to be resumed: params, data and process count."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(f"world={world}".encode())
    for part in arrays:
        if part is not None:
            digest.update(
                np.ascontiguousarray(part).tobytes()
                if part.dtype != object
                else repr(part.tolist()).encode()
            )
    return digest.hexdigest()


@dataclass
class Checkpoint:
    """One file of training state, valid for one `fingerprint` only."""

    path: Path
    fingerprint: str
    announce: bool = True  # print on resume / ignore (rank 0 only under torchrun)

    def load(self, device: torch.device) -> dict[str, Any] | None:
        """The saved state, or None when there is none or it belongs to another run."""
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location=device, weights_only=True)
        if state.get("version") == VERSION and state["fingerprint"] == self.fingerprint:
            return state
        if self.announce:
            print(
                f"ignoring {self.path}: it belongs to another configuration or data",
                file=sys.stderr,
            )
        return None

    def save(self, state: dict[str, Any]) -> None:
        """Write atomically: a kill mid-write leaves the previous epoch's checkpoint intact."""
        state = {"version": VERSION, "fingerprint": self.fingerprint, **state}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
