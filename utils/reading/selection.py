"""Which clips of a data set ``infer.py`` scores: the selection a checkpoint recorded, or the command line's
less the clips the checkpoint trained on."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def select_like_training(args: argparse.Namespace, meta: dict, clips: Sequence[str]) -> tuple[list[str], list[str]]:
    """Training and validation clip ids: by default the selection the checkpoint recorded (its definition,
    and its validation clips exactly, with a warning when the clips present differ); with selection flags
    the command line's, whose validation side never holds a clip the checkpoint was trained on (those are
    left out, and the difference said in one line); the unseen split for a checkpoint that records none."""
    from utils.data import sentence_clips as clip_data
    from utils.data import splits

    chosen = any(v is not None for v in (args.split, args.train_list, args.val_list, args.speakers, args.val_speakers))
    recorded = meta.get("split") or {}
    definition = recorded.get("definition")
    if not definition:
        if not chosen:
            print("warning: the model records no split (an older checkpoint or ONNX file): scoring the unseen "
                  "split's sides; give split, val_speakers or train_list/val_list to choose", file=sys.stderr)
        return clip_data.select_clips(clips, args.split or "unseen", args.train_list, args.val_list,
                                      args.speakers, args.val_speakers, args.missing_clips)
    try:
        rec_train, rec_val = clip_data.select_clips(clips, definition["split"], definition.get("train_list"),
                                                    definition.get("val_list"), definition.get("speakers"),
                                                    definition.get("val_speakers"), args.missing_clips)
    except (FileNotFoundError, ValueError) as err:  # e.g. its clip lists are not on this machine
        known = list(recorded.get("val_clips", ()))
        if not known:
            raise
        cost = ("the clips it trained on cannot be left out of this selection" if chosen
                else "its training side is unknown")
        print(f"warning: the checkpoint's own selection ({describe_definition(definition)}) cannot be rebuilt here "
              f"({err}): only its {len(known)} recorded validation clips are known; {cost}", file=sys.stderr)
        rec_train, rec_val = [], known
    rec_train, rec_val, notes = splits.apply_recorded_selection(recorded, rec_train, rec_val)
    if not chosen:
        print(f"clips selected as at training ({describe_definition(definition)}; validation side as the "
              "checkpoint recorded it)", file=sys.stderr)
        for note in notes:
            print(f"warning: clips differ from the checkpoint's: {note}", file=sys.stderr)
        return rec_train, rec_val
    train_ids, val_ids = clip_data.select_clips(clips, args.split or "unseen", args.train_list, args.val_list,
                                                args.speakers, args.val_speakers, args.missing_clips)
    if (set(train_ids), set(val_ids)) == (set(rec_train), set(rec_val)):
        return train_ids, val_ids
    trained = set(rec_train)
    kept = [c for c in val_ids if c not in trained]
    dropped = len(val_ids) - len(kept)
    print(f"warning: this selection differs from the checkpoint's ({describe_definition(definition)}): "
          + (f"{dropped} of its {len(val_ids)} validation clips were trained on and are left out, " if dropped else
             "none of its validation clips was trained on, ")
          + f"{len(set(kept) & set(rec_val))} of the {len(kept)} scored are the checkpoint's validation clips",
          file=sys.stderr)
    return train_ids, kept


def describe_definition(definition: dict) -> str:
    if definition.get("train_list"):
        return f"train_list={definition['train_list']} val_list={definition.get('val_list')}"
    if definition.get("val_speakers"):
        return f"val_speakers={','.join(str(s) for s in definition['val_speakers'])}"
    speakers = definition.get("speakers")
    return f"split={definition['split']}" + (f" speakers={','.join(str(s) for s in speakers)}" if speakers else "")
