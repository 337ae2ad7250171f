"""Resumable output: a long video written as independently encoded parts, joined at the end.

`vderain run long.mp4 -o out.mp4 --resume` writes `.out.mp4.vderain-parts/part_NNNNN.mp4`
next to the output, one every `segment_frames` frames, each finished atomically with a small
JSON record. An interrupted run (Ctrl-C, SIGTERM, a crash, a reboot) keeps the finished parts;
the same command again skips them (seeking the input to just before the first missing frame,
with enough frames of temporal context for the network's window) and, once every frame is
done, joins the parts by stream copy (no re-encoding) with the input's audio into the output,
then removes the folder. The output path itself only ever holds a complete video.

Parts keep the source timestamps (VFR survives); joining rewrites decode timestamps where an
encoder's B-frame delay makes two parts overlap, which needs every part to come from the
same encoder settings: the folder's manifest records them and a mismatch is refused.
"""
from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction

from vderain import VderainError
from vderain.io.types import VideoInfo
from vderain.io.writer import VideoWriter, _remove, _temp_path, check_output, resolve_codec

MANIFEST = "manifest.json"
FORMAT = 1
_OPTION_NAMES = {"input": "input file (changed since)", "segment_frames": "--segment", "codec": "--codec",
                 "crf": "--crf", "preset": "--preset", "settings": "--method/--window/--tile/--side-by-side",
                 "width": "frame size", "height": "frame size", "time_base": "time base", "format": "vderain version"}


def parts_dir(output: str) -> str:
    parent, name = os.path.split(os.path.abspath(output))
    return os.path.join(parent, f".{name}.vderain-parts")


def _write_json(path: str, obj: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _input_identity(path: str) -> dict:
    st = os.stat(path)
    return {"path": os.path.abspath(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class SegmentedWriter:
    """VideoWriter's interface (write / close / abort), backed by resumable parts.

    settings: whatever must match for parts to be joined or reused (method, codec, crf, ...).
    After construction: `resume_pts` is the source pts of the last frame already done (None:
    start from the beginning), `done_frames` how many frames the finished parts hold, and
    `complete` whether every frame is done (only the join is left).
    """

    def __init__(self, output: str, info: VideoInfo, input: str, segment_frames: int, settings: dict,
                 codec: str | None = None, crf: int | None = None, preset: str = "medium",
                 audio: bool = True):
        self.path = check_output(output, [input], codec)
        self.codec = resolve_codec(codec, self.path)
        if self.codec == "png":
            raise VderainError("--resume needs a video file output, not a folder of PNGs")
        if segment_frames < 1:
            raise VderainError(f"segment length must be at least one frame (got {segment_frames})")
        self.info, self.input = info, input
        self.segment_frames = int(segment_frames)
        self.crf, self.preset, self.audio = crf, preset, audio
        self.notes: list[str] = []
        self.dir = parts_dir(self.path)
        self.ext = os.path.splitext(self.path)[1]
        manifest = {"format": FORMAT, "input": _input_identity(input), "segment_frames": self.segment_frames,
                    "width": info.width, "height": info.height, "time_base": str(info.time_base),
                    "codec": self.codec, "crf": crf, "preset": preset, "settings": settings}
        self.parts = self._load_or_create(manifest)
        self.done_frames = sum(p["frames"] for p in self.parts)
        self.resume_pts = self.parts[-1]["last_pts"] if self.parts else None
        self.resume_time = self.parts[-1]["last_time"] if self.parts else None
        self.complete = bool(self.parts) and bool(self.parts[-1].get("last"))
        self.frames_written = self.done_frames  # VideoWriter's meaning: frames in the output
        self.new_frames = 0
        self._current: VideoWriter | None = None
        self._current_record: dict | None = None
        self._closed = False

    # -- state on disk ------------------------------------------------------------------------
    def _load_or_create(self, manifest: dict) -> list[dict]:
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
            return self._finished_parts()
        if os.path.exists(self.dir):
            shutil.rmtree(self.dir)  # a folder without a manifest never held a finished part
        os.makedirs(self.dir)
        _write_json(mpath, manifest)
        return []

    def _finished_parts(self) -> list[dict]:
        """The contiguous run of finished parts from part 0 (a record is written after its part)."""
        parts = []
        while True:
            rec = os.path.join(self.dir, f"part_{len(parts):05d}.json")
            if not os.path.isfile(rec):
                break
            with open(rec) as f:
                r = json.load(f)
            if not os.path.isfile(os.path.join(self.dir, r["file"])):
                break
            parts.append(r)
            if r.get("last"):
                break
        # anything after the run (a part being written when the run stopped) is redone
        keep = {f"part_{i:05d}{s}" for i in range(len(parts)) for s in (".json", self.ext)} | {MANIFEST}
        for name in os.listdir(self.dir):
            if name not in keep:
                _remove(os.path.join(self.dir, name))
        return parts

    # -- writing --------------------------------------------------------------------------------
    def write(self, rgb, pts: int | None = None, time: float | None = None) -> None:
        """pts: source timestamp (required); time: the reader's seconds for it (where to seek
        on resume; from pts when not given)."""
        if self._closed:
            raise RuntimeError("writer is closed")
        if pts is None:
            raise VderainError("--resume needs frames with timestamps")
        if self.resume_pts is not None and pts <= self.resume_pts:
            return  # temporal context before the resume point: done in an earlier run
        if self._current is None:
            self._open_part(pts)
        self._current.write(rgb, pts)
        rec = self._current_record
        rec["frames"] += 1
        rec["last_pts"] = pts
        rec["last_time"] = float(pts * Fraction(self.info.time_base)) if time is None else float(time)
        self.frames_written += 1
        self.new_frames += 1
        if rec["frames"] >= self.segment_frames:
            self._finish_part(last=False)

    def _open_part(self, pts: int) -> None:
        k = len(self.parts)
        name = f"part_{k:05d}{self.ext}"
        self._current = VideoWriter(os.path.join(self.dir, name), self.info, codec=self.codec, crf=self.crf,
                                    preset=self.preset, inputs=[self.input])
        self._current_record = {"file": name, "index": k, "frames": 0, "first_pts": pts, "last_pts": pts,
                                "time_base": str(self.info.time_base)}

    def _finish_part(self, last: bool) -> None:
        self._current.close()
        rec = dict(self._current_record, last=last)
        _write_json(os.path.join(self.dir, f"part_{rec['index']:05d}.json"), rec)
        self.parts.append(rec)
        self._current, self._current_record = None, None

    def close(self) -> str:
        """Finish the last part, join all parts into the output, remove the parts folder."""
        if self._closed:
            return self.path
        self._closed = True
        try:
            if self._current is not None:
                self._finish_part(last=True)
            elif self.parts and not self.parts[-1].get("last"):
                # the input ended exactly at a part boundary: mark the last part as the end
                rec = dict(self.parts[-1], last=True)
                _write_json(os.path.join(self.dir, f"part_{rec['index']:05d}.json"), rec)
                self.parts[-1] = rec
            if not self.parts:
                raise VderainError("no frames were written; output not created")
            join_parts([os.path.join(self.dir, p["file"]) for p in self.parts], self.parts, self.path,
                       self.input if self.audio else None, self.notes)
        except BaseException:
            if self._current is not None:
                self._current.abort()
            raise
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Drop the part in progress; finished parts stay for the next run."""
        if self._closed:
            return
        self._closed = True
        if self._current is not None:
            self._current.abort()
            self._current = None


def join_parts(files: list[str], records: list[dict], output: str, audio_from: str | None,
               notes: list[str]) -> None:
    """Stream-copy the parts' video, in order, with `audio_from`'s side streams, into `output`."""
    import av

    from vderain.io.writer import _AuxCopier
    tmp = _temp_path(output)
    out = av.open(tmp, "w")
    try:
        first = av.open(files[0])
        vs = out.add_stream_from_template(first.streams.video[0])
        first.close()
        aux = _AuxCopier(out, audio_from, False, notes) if audio_from else None
        out.start_encoding()
        in_tb = Fraction(records[0]["time_base"])
        pts0 = records[0]["first_pts"]
        last_dts = None
        for path, rec in zip(files, records):
            with av.open(path) as part:
                stream = part.streams.video[0]
                tb = stream.time_base
                offset = round((rec["first_pts"] - pts0) * in_tb / tb)    # part time 0 -> output time
                src0 = float(rec["first_pts"] * in_tb)                      # part time 0 in source seconds
                for packet in part.demux(stream):
                    if packet.size == 0 and packet.pts is None:
                        continue  # demuxer flush packet
                    if aux is not None and packet.pts is not None:
                        aux.copy_until(src0 + float(packet.pts * tb))
                    if packet.pts is not None:
                        packet.pts += offset
                    if packet.dts is not None:
                        packet.dts += offset
                        # two parts' B-frame delays can overlap by a frame or two: keep dts rising
                        if last_dts is not None and packet.dts <= last_dts:
                            packet.dts = last_dts + 1
                        if packet.pts is not None and packet.dts > packet.pts:
                            raise VderainError("cannot join the parts: their timestamps overlap "
                                               f"({os.path.basename(path)}); delete {os.path.dirname(path)}")
                        last_dts = packet.dts
                    packet.stream = vs
                    out.mux(packet)
        if aux is not None:
            end = float(records[-1]["last_time"]) + 1.0 / 1000
            aux.finish(end)
        out.close()
        os.replace(tmp, output)
    except BaseException:
        try:
            out.close()
        except Exception:
            pass
        _remove(tmp)
        raise
