"""Phone-like videos made from the shared GRID clips at test time (in temporary folders, never committed)."""
from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from utils.video.mouth_extractor import read_video
from utils.video.writer import write_video

GRID_FPS = 25.0


GRID_CLIPS = ("bbaf2n", "lwbsza", "swwp2s")  # the shared clips, by name


def grid_rgb(path: Path) -> np.ndarray:
    """A GRID clip's frames, RGB (75, 288, 360, 3)."""
    return np.stack([f[..., ::-1] for f in read_video(path)[0]])


def at_times(frames: np.ndarray, times: np.ndarray) -> list[np.ndarray]:
    """The 25 fps frames shown at each time (nearest frame)."""
    return [frames[min(len(frames) - 1, int(round(t * GRID_FPS)))] for t in times]


def set_rotation(path: Path) -> None:
    """Mark an MP4's video track as shown turned 90 degrees clockwise (a phone's portrait video): the
    display matrix in its track header (PyAV cannot write one)."""
    data = bytearray(path.read_bytes())
    at = data.find(b"tkhd")
    assert at > 0, f"{path}: no track header"
    offset = at + 4 + 4 + (32 if data[at + 4] == 1 else 20) + 8 + 8
    data[offset: offset + 36] = struct.pack(">9i", 0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000)
    path.write_bytes(bytes(data))


def transcode(frames: np.ndarray, path: Path, fps: float, size: tuple[int, int] | None = None) -> Path:
    """A clip re-encoded at another frame rate and size (W, H), as H.264."""
    times = np.arange(int(round(len(frames) / GRID_FPS * fps))) / fps
    picked = at_times(frames, times)
    if size is not None:
        picked = [cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) for f in picked]
    return write_video(path, picked, fps)


def turned(frames: np.ndarray, path: Path, degrees: float) -> Path:
    """The clip with its picture turned ``degrees`` counter-clockwise about the frame's centre (a head tilted
    in the image plane, as FFmpeg's ``rotate`` filter makes it: black where the turned picture leaves the frame),
    as H.264."""
    h, w = frames.shape[1:3]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    return write_video(path, [cv2.warpAffine(f, matrix, (w, h), flags=cv2.INTER_LINEAR) for f in frames], GRID_FPS)


def noisy(frames: np.ndarray, path: Path, seed: int, strength: int = 25) -> Path:
    """A clip from a noisy camera, as H.264: FFmpeg's ``noise=alls=STRENGTH:allf=t`` (fresh noise on every
    frame and plane, seeded) through PyAV's filter graph."""
    graph = av.filter.Graph()
    height, width = frames.shape[1:3]
    source = graph.add_buffer(width=width, height=height, format="yuv420p", time_base="1/25")
    noise = graph.add("noise", f"alls={strength}:allf=t:all_seed={seed}")
    sink = graph.add("buffersink")
    source.link_to(noise)
    noise.link_to(sink)
    graph.configure()
    out = []
    for i, image in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        graph.push(frame)
        out.append(graph.pull().to_ndarray(format="rgb24"))
    return write_video(path, out, GRID_FPS)


def portrait(frames: np.ndarray, path: Path) -> Path:
    """A portrait video as phones store it: landscape frames turned on their side plus rotation metadata."""
    upright = [cv2.copyMakeBorder(f, 176, 176, 0, 0, cv2.BORDER_CONSTANT, value=(40, 40, 40)) for f in frames]
    write_video(path, [np.ascontiguousarray(np.rot90(f, 1)) for f in upright], GRID_FPS)
    set_rotation(path)
    return path


def concatenated(clips: list[np.ndarray], path: Path) -> tuple[Path, list[float]]:
    """The clips one after another at a variable frame rate (gaps alternating 1/30 and 1/20 s);
    returns the path and the times of the cuts."""
    total = sum(len(c) for c in clips) / GRID_FPS
    gaps = np.resize([1 / 30, 1 / 20], int(total * 30))
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    times = times[times < total - 1e-9]
    whole = np.concatenate(clips)
    write_video(path, at_times(whole, times), 24, times=times)
    cuts = list(np.cumsum([len(c) / GRID_FPS for c in clips])[:-1])
    return path, cuts


def two_faces(big: np.ndarray, small: np.ndarray, path: Path, ratio: float = 0.7) -> Path:
    """``big`` at full size beside ``small`` shrunk by ``ratio``, on one canvas."""
    h, w = big.shape[1:3]
    sw, sh = int(w * ratio) & ~1, int(h * ratio) & ~1
    canvas = np.full((len(big), h, w + sw + 8, 3), 60, np.uint8)
    canvas[:, :, :w] = big
    top = (h - sh) // 2
    for i, f in enumerate(small):
        canvas[i, top: top + sh, w + 8:] = cv2.resize(f, (sw, sh), interpolation=cv2.INTER_AREA)
    return write_video(path, canvas, GRID_FPS)


def encoded(frames: np.ndarray, path: Path, codec: str = "libx264", times: np.ndarray | None = None,
            muxer_options: dict[str, str] | None = None, codec_options: dict[str, str] | None = None,
            audio_seconds: float | None = None) -> Path:
    """``frames`` (RGB, 25 fps unless ``times`` gives each frame's time) encoded with ``codec`` into the
    container ``path``'s suffix names (``muxer_options``: e.g. MP4's faststart); ``audio_seconds`` adds a
    silent AAC (MP4) or Opus track of that length, so the container's duration is the audio's."""
    with av.open(str(path), "w", options=muxer_options or {}) as container:
        stream = container.add_stream(codec, rate=Fraction(25))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = codec_options or {}
        if times is not None:
            stream.codec_context.time_base = Fraction(1, 90000)
        audio = None
        if audio_seconds:
            audio = container.add_stream("aac" if path.suffix == ".mp4" else "libopus", rate=48000)
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = ((int(round(times[i] * 90000)), Fraction(1, 90000)) if times is not None
                                          else (i, Fraction(1, 25)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            size = audio.codec_context.frame_size or 960
            kind = np.float32 if audio.codec_context.format.name.startswith("flt") else np.int16
            for start in range(0, int(audio_seconds * 48000), size):
                samples = av.AudioFrame.from_ndarray(np.zeros((1, size), kind), format=audio.codec_context.format.name,
                                                     layout="mono")
                samples.sample_rate, samples.pts, samples.time_base = 48000, start, Fraction(1, 48000)
                container.mux(audio.encode(samples))
            container.mux(audio.encode(None))
    return path


def cut(path: Path, out: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``path``'s bytes: a copy or download cut off."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out
