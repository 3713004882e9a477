"""Create or update the JetStream streams listed in `contracts.subjects.STREAMS`."""

from __future__ import annotations

import dataclasses
import logging

from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from contracts.subjects import STREAMS, StreamSpec

log = logging.getLogger("sigrelay.streams")


def stream_config(spec: StreamSpec, *, replicas: int = 1) -> StreamConfig:
    """The JetStream configuration for one stream of the design."""
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        storage=StorageType.FILE,
        max_age=spec.max_age_s,
        duplicate_window=spec.duplicate_window_s,
        discard=DiscardPolicy.OLD,
        num_replicas=replicas,
    )


def _differences(want: StreamConfig, have: StreamConfig) -> list[str]:
    found = []
    if sorted(want.subjects or []) != sorted(have.subjects or []):
        found.append(f"subjects {have.subjects} -> {want.subjects}")
    for field in ("storage", "max_age", "duplicate_window", "discard", "num_replicas"):
        old, new = getattr(have, field), getattr(want, field)
        if isinstance(old, float) or isinstance(new, float):
            same = old is not None and new is not None and abs(float(old) - float(new)) < 1e-3
        else:
            same = old == new
        if not same:
            found.append(f"{field} {old} -> {new}")
    return found


async def ensure_streams(js: JetStreamContext, *, replicas: int = 1, update: bool = True) -> None:
    """Create each stream of the design that is missing; update those that differ.

    Idempotent. With `update=False` (service users, who may create but not update
    streams) a stream whose configuration differs is left alone with a warning.
    Storage type cannot change in place: a stream found on memory storage is an error.
    """
    for spec in STREAMS:
        want = stream_config(spec, replicas=replicas)
        try:
            info = await js.stream_info(spec.name)
        except NotFoundError:
            await js.add_stream(want)
            log.info("stream %s created: %s", spec.name, ", ".join(spec.subjects))
            continue
        differences = _differences(want, info.config)
        if not differences:
            continue
        if info.config.storage != want.storage:
            raise RuntimeError(
                f"stream {spec.name} uses {info.config.storage} storage, the design needs "
                f"{want.storage}; JetStream cannot change it in place: migrate the stream"
            )
        if not update:
            log.warning("stream %s differs from the design, left as is: %s", spec.name, differences)
            continue
        # keep settings the design does not own (limits set by an operator, sources, ...)
        merged = dataclasses.replace(
            info.config,
            subjects=want.subjects,
            max_age=want.max_age,
            duplicate_window=want.duplicate_window,
            discard=want.discard,
            num_replicas=want.num_replicas,
        )
        await js.update_stream(merged)
        log.info("stream %s updated: %s", spec.name, "; ".join(differences))
