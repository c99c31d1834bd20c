"""Read a W&B offline run (`run-<id>.wandb`) back, for tests.

wandb 0.31 no longer ships a Python reader for run files (its `datastore` module moved into
the Go core), so this reads the file's framing here and decodes every record with wandb's own
protobuf classes (`wandb.proto.wandb_internal_pb2.Record`). The framing is LevelDB's log
format: 32 KiB blocks of chunks, each with a 7-byte header (crc32c, length, type), after a
7-byte ":W&B" file header.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: Path):
    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, parts = 7, []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        payload = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            parts = [payload]
        elif kind in (FIRST, MIDDLE):
            parts = [payload] if kind == FIRST else [*parts, payload]
            continue
        elif kind == LAST:
            parts.append(payload)
        else:  # zero padding at the end of a block
            pos += BLOCK - pos % BLOCK if pos % BLOCK else 0
            continue
        record = pb.Record()
        record.ParseFromString(b"".join(parts))
        yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(path: Path) -> dict:
    """`{"id", "name", "config", "history": [{"_step": n, key: value}], "summary", "artifacts"}`."""
    run = {"config": {}, "history": [], "summary": {}, "artifacts": [], "exit_code": None}
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run["id"], run["name"] = record.run.run_id, record.run.display_name
            run["tags"] = list(record.run.tags)
            for item in record.run.config.update:
                run["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                run["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            row = {_key(i): json.loads(i.value_json) for i in record.history.item}
            run["history"].append(row)
        elif kind == "summary":
            for item in record.summary.update:
                run["summary"][_key(item)] = json.loads(item.value_json)
        elif kind == "artifact":
            run["artifacts"].append((record.artifact.name, record.artifact.type))
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return run
