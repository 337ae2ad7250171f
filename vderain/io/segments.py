"""Resumable, shardable output: a long video written as independently encoded parts.

`vderain run long.mp4 -o out.mp4 --resume` cuts the input's timeline into parts of
`--segment` seconds: part k holds the frames with time in [k*S, (k+1)*S). Each part is
derained on its own (the input is seeked to a little before the part and read a little past
it, so the network's window sees the same neighbours as in one continuous run; those context
frames are not written) and encoded to `.out.mp4.vderain-parts/part_NNNNN.mp4`, finished
atomically with a small JSON record. An interrupted run keeps its finished parts; the same
command continues with the missing ones. With `--shard I/N` job I of N does the parts
k = I, I+N, ... (a single file spread over machines sharing the folder). When every part is
done, they are joined by stream copy (no second encode) with the input's audio, subtitle and
data tracks into the output, and the folder is removed. The output path only ever holds a
complete video.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from fractions import Fraction

from vderain import VderainError
from vderain.io.writer import Keepalive, _remove, _temp_path, create_owner_file, sync_file

MANIFEST = "manifest.json"
JOIN_LOCK = "join.lock"
FORMAT = 2
_OPTION_NAMES = {"input": "input file (changed since)", "segment": "--segment", "codec": "--codec",
                 "crf": "--crf", "preset": "--preset", "settings": "--method/--window/--tile/--side-by-side/--stabilise, or vderain version",
                 "format": "vderain version"}


def parts_dir(output: str) -> str:
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}.vderain-parts")


def _write_json(path: str, obj: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _input_identity(path: str) -> dict:
    # the name, not the full path: cluster nodes may mount the same file at different places
    st = os.stat(path)
    return {"name": os.path.basename(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class PartStore:
    """The parts folder of one output: which parts exist, where each goes, the manifest check.

    settings: whatever must match for parts to be joined (method, window, tiling, ...).
    """

    def __init__(self, output: str, input: str, duration: float, segment: float, ext: str, settings: dict,
                 codec: str, crf, preset: str):
        if not duration or not math.isfinite(duration) or duration <= 0:
            raise VderainError("--resume needs an input whose duration is known")
        self.output, self.input = output, input
        self.dir = parts_dir(output)
        self.lock = os.path.join(self.dir, JOIN_LOCK)
        self.segment = float(segment)
        self.ext = ext
        self.count = max(1, math.ceil(duration / self.segment - 1e-9))
        self._check_manifest({"format": FORMAT, "input": _input_identity(input), "segment": self.segment,
                              "codec": codec, "crf": crf, "preset": preset, "settings": settings})

    def _check_manifest(self, manifest: dict) -> None:
        mpath = os.path.join(self.dir, MANIFEST)
        if os.path.isfile(mpath):
            try:
                with open(mpath) as f:
                    old = json.load(f)
            except (OSError, ValueError) as e:
                raise VderainError(f"cannot read {mpath} ({e}); delete {self.dir} to start over") from None
            diff = [k for k in manifest if old.get(k) != manifest[k]]
            if diff:
                what = ", ".join(dict.fromkeys(_OPTION_NAMES.get(k, k) for k in diff))
                raise VderainError(f"{self.dir} holds parts of a run with another {what}; rerun with the "
                                   f"same input and options, or delete the folder to start over")
            return
        os.makedirs(self.dir, exist_ok=True)
        _write_json(mpath, manifest)  # several shards may race here: they write the same manifest

    # -- parts ------------------------------------------------------------------------------
    def name(self, k: int) -> str:
        return f"part_{k:05d}"

    def path(self, k: int) -> str:
        return os.path.join(self.dir, self.name(k) + self.ext)

    def span(self, k: int) -> tuple[float, float]:
        """[start, end) in the reader's seconds; the first and last parts run to the input's ends."""
        return (k * self.segment if k > 0 else -math.inf,
                (k + 1) * self.segment if k < self.count - 1 else math.inf)

    def record(self, k: int) -> dict | None:
        try:
            with open(os.path.join(self.dir, self.name(k) + ".json")) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            return None
        if rec.get("frames", 0) > 0 and not os.path.isfile(self.path(k)):
            return None
        return rec

    def done(self) -> list[int]:
        return [k for k in range(self.count) if self.record(k) is not None]

    def finish(self, k: int, frames: int, first_pts: int | None, time_base, decode_problems=None) -> None:
        _write_json(os.path.join(self.dir, self.name(k) + ".json"),
                    {"part": k, "file": self.name(k) + self.ext, "frames": frames, "first_pts": first_pts,
                     "time_base": str(time_base), "decode_problems": decode_problems})

    def decode_problems(self) -> list[str]:
        """Damage found in the input while the finished parts were made, by any run or shard."""
        return [f"part {k}: {r['decode_problems']}" for k in range(self.count)
                if (r := self.record(k)) is not None and r.get("decode_problems")]

    # -- joining ------------------------------------------------------------------------------
    def try_lock(self) -> bool:
        """Only one shard joins: the first to create the lock file (a later unsharded run joins
        anyway). A lock whose joiner is gone is taken over: its PID is dead on this host (or is
        ours: a container restarts with the same PID), or, from another host, it went untouched
        for LOCK_STALE_S (a join touches it every minute). False too when the folder is gone:
        another shard has joined the parts."""
        return create_owner_file(self.lock, LOCK_STALE_S)

    def join(self, audio_from: str | None, notes: list[str], locked: bool = False) -> None:
        try:
            records = [self.record(k) for k in range(self.count)]
            if any(r is None for r in records):
                raise VderainError(f"cannot join: part(s) missing in {self.dir}")
            records = [r for r in records if r["frames"] > 0]
            if not records:
                raise VderainError(f"no video frames could be decoded from {self.input}")
            with Keepalive(self.lock, 60) if locked else contextlib.nullcontext():
                join_parts([os.path.join(self.dir, r["file"]) for r in records], records, self.output,
                           audio_from, notes)
        except BaseException:
            if locked:
                _remove(self.lock)   # let the next run of any shard join
            raise
        shutil.rmtree(self.dir, ignore_errors=True)


LOCK_STALE_S = 600   # a join touches its lock every minute


def join_parts(files: list[str], records: list[dict], output: str, audio_from: str | None,
               notes: list[str]) -> None:
    """Stream-copy the parts' video, in order, with `audio_from`'s side streams, into `output`."""
    import av

    from vderain.io.writer import _AuxCopier
    tmp = _temp_path(output)
    out = av.open(tmp, "w")
    try:
        with av.open(files[0]) as first:
            vs = out.add_stream_from_template(first.streams.video[0])
        aux = _AuxCopier(out, audio_from, False, notes) if audio_from else None
        out.start_encoding()
        in_tb = Fraction(records[0]["time_base"])
        pts0 = records[0]["first_pts"]
        if aux is not None:
            # the side streams start where the first frame was in the source, as in one run; a
            # part's own first packet time is no measure of it (AVI's demuxer gives pts = dts + 1,
            # which cut 64 ms of audio from an .avi's start: sound ahead of picture)
            aux.copy_until(float(pts0 * in_tb))
        last_dts = None
        for path, rec in zip(files, records):
            with av.open(path) as part:
                stream = part.streams.video[0]
                tb = stream.time_base
                # a part starts at time 0 in its file: put it back where it was in the source
                offset = round((rec["first_pts"] - pts0) * in_tb / tb)
                src0 = float(rec["first_pts"] * in_tb)
                for packet in part.demux(stream):
                    if packet.size == 0 and packet.pts is None:
                        continue  # demuxer flush packet
                    if aux is not None and packet.pts is not None:
                        aux.copy_until(src0 + float(packet.pts * tb))
                    if packet.pts is not None:
                        packet.pts += offset
                    if packet.dts is not None:
                        packet.dts += offset
                    # keep dts rising: two parts' B-frame delays can overlap by a tick or two, and
                    # Matroska gives a part's first packets no dts at all
                    if last_dts is not None and (packet.dts is None or packet.dts <= last_dts):
                        packet.dts = last_dts + 1
                    if packet.dts is not None:
                        if packet.pts is not None and packet.dts > packet.pts:
                            raise VderainError(f"cannot join the parts: their timestamps overlap at "
                                               f"{os.path.basename(path)}; delete {os.path.dirname(path)}")
                        last_dts = packet.dts
                    packet.stream = vs
                    out.mux(packet)
        if aux is not None:
            aux.finish(math.inf)
        out.close()
        sync_file(tmp)
        os.replace(tmp, output)
    except BaseException:
        try:
            out.close()
        except Exception:
            pass
        _remove(tmp)
        raise
