"""A synthetic visual-speech corpus in GRID's grammar, layout and align format.

Why it exists: the real GRID corpus is 16 GB of video and hours of preprocessing, so a newcomer
cannot see LipNet learn anything on a laptop. These clips are drawn in milliseconds, follow the
GRID file layout exactly (``datasets/sN/{clip}.npz`` + ``align/sN/{clip}.align``), and are built
so that, like real lip reading, they can only be read from the motion, not from single frames.

The speech model:

* Every character is said with one of nine mouth shapes (``SHAPES``, viseme classes), so most
  shapes stand for several characters (``b``, ``m`` and ``p`` are all closed lips) and appear
  in many words. A single-letter word is said as the letter's name, two shapes in a row
  (``b`` is closed lips opening to a relaxed mid-open mouth). One frame therefore cannot tell ``b`` from ``m``
  or ``p``, while the sequence of shapes tells every word of a GRID slot from the others.
* Shapes are mouth parameters (opening, width, rounding, lip thickness, upper/lower teeth,
  tongue, lower-lip tuck). The trajectory through them is co-articulated with dominance
  functions (Cohen and Massaro, 1993): each shape target pulls the mouth with a Gaussian in
  time, so neighbours bleed into each other and targets are undershot when speech is fast.
* Timing follows GRID: about 0.5 s of leading silence, words whose length grows with their
  number of shapes, occasional short pauses (``sp``), trailing silence, and a speaking rate
  that varies by speaker and by clip.
* Speakers differ in skin, lip, teeth and mouth colours, mouth size and position, lighting
  gradient, skin texture, camera noise, head motion, speaking rate and articulation.

Everything is deterministic: a clip's random stream is derived from ``(seed, speaker, index)``
only, so a parallel run writes the same clips as a serial one.
"""
from utils.synthetic.mouths import (  # noqa: F401 (the package's API)
    ALIGN_END,
    CHARACTER_SHAPES,
    DEFAULT_SIZE,
    DOMINANCE,
    LETTER_NAMES,
    N_FRAMES,
    N_SENTENCES,
    PARAMS,
    REST,
    SHAPE_FRAMES,
    SHAPE_NAMES,
    SHAPE_TABLE,
    SHAPES,
    ClipPlan,
    Speaker,
    clip_plan,
    make_speaker,
    mouth_trajectory,
    plan_clip,
    render_clip,
    render_frames,
    sentence_code,
    speaker_sentences,
    visible_shapes,
    word_shapes,
)
from utils.synthetic.record import SetMismatch  # noqa: F401 (what the generators raise)
from utils.synthetic.sentences import (  # noqa: F401
    DEFAULT_CLIPS_PER_SPEAKER,
    DEFAULT_SPEAKERS,
    DEFAULT_TGT_PATH,
    MIN_GRID_SIZE,
    GenerateReport,
    generate,
    preview_strip,
    save_preview,
)
