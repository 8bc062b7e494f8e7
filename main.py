"""Train LipNet: ``python main.py [--key=value | key=value ...]`` (``--help`` lists every option).

The defaults are the original Apache MXNet example's (batch 64, 100 epochs, dropout 0.5, one GPU)
with Adam at 1e-4. ``model_path=checkpoint/last`` resumes a run exactly; ``model_path`` naming the
example's published parameter file fine-tunes from it. ``task=words`` trains the word classifier
(ResNet-18 + MS-TCN) on an LRW-layout tree instead, e.g. with
``--config asset/configs/lrw_resnet18_mstcn.yaml --override "batch_size=16|epochs=40"``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from utils.data.light import INPUT_NORMS, Light
from utils.data.splits import MISSING_CLIPS, SPLITS
from utils.runtime.atomic import NotWritableError
from utils.runtime.cli import (
    add_config_options,
    bounded,
    given_options,
    non_negative_float,
    non_negative_int,
    parse_args,
    parse_speakers,
    positive_float,
    positive_int,
    positive_ints,
    probability,
    str2bool,
)
from utils.runtime.gpu_preflight import GpuProblem, preflight
from utils.runtime.paths import ALIGN_DIR, CHECKPOINT_DIR, DATASET_DIR
from utils.text.decoders import DECODERS, DEFAULT_BEAM_WIDTH
from utils.text.lm_decoder import DEFAULT_LM_WEIGHT, DEFAULT_WORD_BONUS

KVSTORES = ("device", "local", "dist_sync", "dist_device_sync", "dist_async")
TASKS = ("sentences", "words")


def frames_per_sample(value: str) -> int | None:
    """A positive frame count, or ``any`` (None): each clip's own length."""
    if value == "any":
        return None
    try:
        frames = int(value)
    except ValueError:
        frames = 0
    if frames < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number of frames or 'any', got {value!r}")
    return frames


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--task", default="sentences", choices=TASKS,
                        help="sentences: LipNet with CTC on GRID-style clips; words: the word classifier "
                             "(ResNet-18 + MS-TCN) on an LRW-layout tree (image_path=ROOT with ROOT/WORD/{train,val})")
    add_config_options(parser)
    data = parser.add_argument_group("data")
    data.add_argument("--image_path", default=str(DATASET_DIR),
                      help="mouth crops: sN/{clip}.npz (packed) or sN/{clip}/mouth_*.png folders; task=words: "
                           "the root of WORD/{train,val,test}/WORD_NNNNN.npz")
    data.add_argument("--align_path", default=str(ALIGN_DIR),
                      help="align files (sN/{clip}.align or flat {clip}.align); clips without one are "
                           "labelled from their GRID name")
    data.add_argument("--split", default="unseen", choices=SPLITS,
                      help="standard protocol: unseen speakers (s1, s2, s20, s22 held out) or overlapped "
                           "(255 clips of each speaker held out)")
    data.add_argument("--train_list", default=None, help="file of SPEAKER/CLIP lines to train on (with --val_list)")
    data.add_argument("--val_list", default=None, help="file of SPEAKER/CLIP lines to validate on")
    data.add_argument("--missing_clips", default="warn", choices=MISSING_CLIPS,
                      help="clips a list names that are absent: warn (counted, the first named) and go on, "
                           "or error")
    data.add_argument("--speakers", type=parse_speakers, default=None, help="only these speakers, e.g. 1-34 or 1,2,20")
    data.add_argument("--val_speakers", type=parse_speakers, default=None,
                      help="validate on these speakers and train on the rest (overrides --split)")
    data.add_argument("--num_workers", type=non_negative_int, default=0,
                      help="data-loading worker threads (decoding and augmentation run outside the GIL)")
    data.add_argument("--frames", type=frames_per_sample, default=75,
                      help="frames per sample: N cuts or pads (holding the last frame) every clip to N (GRID's 75: "
                           "every batch one shape); any: each clip keeps its own length and a batch is padded to "
                           "its longest clip")
    data.add_argument("--bucket", type=str2bool, default=True,
                      help="with frames=any, batch clips of similar length together (less padding); each epoch "
                           "still shuffles, and a resume continues exactly")
    data.add_argument("--flip_prob", type=probability, default=0.5, help="probability of a horizontal flip")
    data.add_argument("--jitter_prob", type=bounded(float, 0, 0.5), default=0.05,
                      help="per-frame probability of deletion and of duplication (the paper's temporal jitter)")
    data.add_argument("--recode_prob", type=probability, default=0.0,
                      help="probability that a training clip is shrunk and enlarged back (by up to 2x), and "
                           "independently that it is JPEG-compressed (quality 30-90): robustness to re-encoded, "
                           "upscaled videos, for models trained on very few clips")
    data.add_argument("--low_rate_prob", type=probability, default=0.0,
                      help="probability that a training clip is shown as a slower camera (12 fps up to the clip's "
                           "rate) resampled to the clip's rate shows it: its frames repeated in the regular beat with "
                           "which 12-15 fps videos reach the network")
    data.add_argument("--light_prob", type=probability, default=0.0,
                      help="probability that a training clip is shown under another light: one change of its "
                           "luma (colour kept) for the whole clip, of brightness, contrast and gamma drawn within "
                           "light_brightness, light_contrast and light_gamma (docs/training.md: light)")
    data.add_argument("--light_brightness", type=bounded(float, 0, 1), default=Light().brightness,
                      help="with light_prob: largest brightness offset, as a fraction of full scale (0: none)")
    data.add_argument("--light_contrast", type=bounded(float, 0, 1, high_open=True), default=Light().contrast,
                      help="with light_prob: contrast factor drawn from [1 - this, 1 + this] (0: none)")
    data.add_argument("--light_gamma", type=bounded(float, 0, 3), default=Light().gamma,
                      help="with light_prob: gamma drawn from [1 / (1 + this), 1 + this] (0: none)")
    data.add_argument("--word_prob", type=probability, default=0.0,
                      help="probability of training on one aligned word of a clip instead of the sentence")
    data.add_argument("--aligned_ctc", type=str2bool, default=False,
                      help="score a whole clip that has an align file word by word: each word's CTC loss over its "
                           "own frames plus blanks over the silences, so that words are spelt where they were said "
                           "(temporal jitter moves each word with its frames)")
    net = parser.add_argument_group("network")
    net.add_argument("--alphabet", default="auto", choices=("auto", "grid", "captions"),
                     help="characters the network spells: grid (a-z, space), captions (a-z, space, apostrophe), "
                          "or auto: the checkpoint's when starting from one, else grid when every training and "
                          "validation sentence is written in it, else captions. With fine_tune=true, a model_path "
                          "with another alphabet is fine-tuned to this one: every layer but the output is kept")
    net.add_argument("--input_norm", default=None, choices=INPUT_NORMS,
                     help="input normalisation, recorded in the checkpoint: dataset (each channel by the training "
                          "set's mean and std) or clip (each clip by its own, so a darker or flatter video reads "
                          "as the original; docs/training.md: light). Default: the checkpoint's when starting "
                          "from one, else dataset (task=sentences)")
    net.add_argument("--variant", default="paper", choices=("paper", "example"),
                     help="paper: LipNet as published; example: the original MXNet example's layout")
    net.add_argument("--channels", type=positive_ints, default=[32, 64, 96],
                     help="channels of the three 3-D convolutions, comma-separated")
    net.add_argument("--norm", default=None, choices=("none", "instance", "batch"),
                     help="normalisation after each convolution (default: the variant's: none for paper, "
                          "instance for example; batch trains several times faster than instance on a CPU)")
    net.add_argument("--hidden", type=positive_int, default=256, help="units of each GRU direction")
    net.add_argument("--dr_rate", type=bounded(float, 0, 1, high_open=True), default=0.5,
                     help="spatial dropout rate after each convolution")
    words = parser.add_argument_group("word network (task=words; the defaults are lrw_resnet18_mstcn's)")
    words.add_argument("--relu_type", default="swish", choices=("relu", "prelu", "swish"), help="activations")
    words.add_argument("--width_mult", type=positive_float, default=1.0, help="scales the ResNet-18 trunk's channels")
    words.add_argument("--tcn_kernel_size", type=positive_ints, default=[3, 5, 7],
                       help="MS-TCN branch kernel sizes, comma-separated")
    words.add_argument("--tcn_num_layers", type=positive_int, default=4, help="MS-TCN blocks (dilations 1, 2, 4, ...)")
    words.add_argument("--tcn_width_mult", type=positive_float, default=1.0,
                       help="MS-TCN width: 256 channels per branch times this")
    words.add_argument("--tcn_dropout", type=bounded(float, 0, 1, high_open=True), default=0.2,
                       help="dropout rate inside the MS-TCN blocks")
    words.add_argument("--tcn_dwpw", type=str2bool, default=False,
                       help="depthwise + pointwise convolutions in the MS-TCN branches")
    words.add_argument("--crop", type=positive_int, default=88,
                       help="side of the square crop the network reads from each frame (random in training, "
                            "centred otherwise); the recipe's 88 from LRW's 96x96 mouth regions")
    words.add_argument("--mixup_alpha", type=non_negative_float, default=0.0,
                       help="mixup of clip pairs with a Beta(alpha, alpha) weight per batch (0: off; recipe 0.4)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--batch_size", type=positive_int, default=64,
                     help="clips per optimiser step, split over this process's devices (dist_*: per worker)")
    opt.add_argument("--epochs", type=positive_int, default=100,
                     help="epochs to train in all (a resume continues up to this many; it may be raised)")
    opt.add_argument("--lr", type=non_negative_float, default=1e-4,
                     help="learning rate (0: the weights stay as loaded)")
    opt.add_argument("--optimizer", default="adam", choices=("adam", "adamw"),
                     help="adam, or adamw (decoupled weight decay, the word recipe's)")
    opt.add_argument("--weight_decay", type=non_negative_float, default=0.0, help="weight decay (adamw: decoupled)")
    opt.add_argument("--lr_schedule", default="constant", choices=("constant", "cosine"),
                     help="constant, or cosine: from lr down to lr/100 over the run's epochs")
    opt.add_argument("--adam_epsilon", type=positive_float, default=1e-8,
                     help="Adam's epsilon: a larger one damps the steps of parameters whose gradients are tiny")
    opt.add_argument("--warmup_steps", type=non_negative_int, default=0, help="linear learning-rate warm-up steps")
    opt.add_argument("--clip_gradient", type=non_negative_float, default=10.0,
                     help="clip each gradient element to +-this (0: off)")
    opt.add_argument("--stop_wer", type=non_negative_float, default=None,
                     help="stop once the validation WER is at or below this (e.g. 0 to overfit a few clips)")
    opt.add_argument("--stop_accuracy", type=probability, default=None,
                     help="task=words: stop once the validation top-1 accuracy is at or above this")
    opt.add_argument("--seed", type=non_negative_int, default=0,
                     help="seeds initialisation, shuffling, augmentation, dropout")
    run = parser.add_argument_group("run")
    run.add_argument("--num_gpus", type=non_negative_int, default=1, help="GPUs to train on (0: CPU)")
    run.add_argument("--num_cpus", type=positive_int, default=1, help="CPU contexts when training on the CPU")
    run.add_argument("--kvstore", default="device", choices=KVSTORES,
                     help="gradient aggregation: device or local over this process's GPUs/CPU contexts; "
                          "dist_sync, dist_device_sync or dist_async across worker processes started by "
                          "utils/launch.py (batch_size is then per worker)")
    run.add_argument("--amp", type=str2bool, default=False,
                     help="mixed precision (float16) with MXNet AMP and dynamic loss scaling; GPU only")
    run.add_argument("--model_path", default=None,
                     help="resume the run of a checkpoint (run folder, checkpoint folder or its model.params) with "
                          "its recorded settings, or fine-tune from the original example's parameter file")
    run.add_argument("--fine_tune", type=str2bool, default=False,
                     help="with model_path of our checkpoint: start a new run from its weights (its network and "
                          "normalisation; data, split, optimiser and schedule from this command line), epoch 0")
    run.add_argument("--overwrite", type=str2bool, default=False,
                     help="start afresh in a save_dir that holds another run's checkpoints, removing that run's "
                          "outputs (last/, best/, logs, metrics, curves); without it such a save_dir is refused")
    run.add_argument("--save_dir", default=str(CHECKPOINT_DIR),
                     help="where last/, best/, train.log, metrics.csv, curves.png and tensorboard/ go")
    run.add_argument("--val_interval", type=positive_int, default=1,
                     help="validate, log and checkpoint every this many epochs (and after the last)")
    run.add_argument("--decoder", default="greedy", choices=DECODERS,
                     help="decoder of the validation pass (recorded in the checkpoint as infer.py's default): greedy, "
                          "beam, grammar (GRID sentences) or lm (beam search with a word language model, lm_path)")
    run.add_argument("--beam_width", type=positive_int, default=DEFAULT_BEAM_WIDTH, help="beam width of beam and lm")
    run.add_argument("--lm_path", default=None, help="ARPA word language model of the lm decoder (utils/build_lm.py)")
    run.add_argument("--lm_weight", type=non_negative_float, default=DEFAULT_LM_WEIGHT,
                     help="weight of the language model's log-probability (alpha) in the lm decoder")
    run.add_argument("--word_bonus", type=bounded(float), default=DEFAULT_WORD_BONUS,
                     help="score added per word (beta) by the lm decoder")
    run.add_argument("--show_examples", type=non_negative_int, default=3,
                     help="validation [Target]/[Pred] pairs logged per epoch")
    run.add_argument("--progress", type=str2bool, default=True, help="show progress bars")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.fine_tune and not args.model_path:
        parser.error("fine_tune=true needs model_path (the checkpoint whose weights the new run starts from)")
    if args.task == "words" and (args.input_norm == "clip" or args.light_prob):
        parser.error("input_norm=clip and light_prob are settings of task=sentences: word clips are normalised "
                     "by the LRW recipe's fixed mean and std")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:  # GPUs that cannot train stop the run now, not in its first epoch (the CPU build skips this)
        for line in preflight(args.num_gpus):
            logging.getLogger("lipnet").info("%s", line)
    except GpuProblem as err:
        logging.getLogger("lipnet").error("%s", err)
        return 2
    from trainer import train  # MXNet loads here, after the command line is known to be valid

    try:
        result = train(args, given_options(parser, argv))
    except (FileNotFoundError, ValueError) as err:
        logging.getLogger("lipnet").error("%s", err)
        return 2
    except NotWritableError as err:  # a save_dir that cannot hold the checkpoints, found before any epoch
        logging.getLogger("lipnet").error("save_dir %s", err)
        return 2
    except KeyboardInterrupt:  # Ctrl-C before training's own handler is in place, or after it is removed
        logging.getLogger("lipnet").warning("interrupted")
        return 130
    metrics = result["metrics"]
    if metrics and args.task == "words":
        print(f"final validation: top-1 {metrics['val_acc']:.4f}, top-5 {metrics['val_top5']:.4f}; "
              f"checkpoints in {result['last']} and {result['best']}")
    elif metrics:
        print(f"final validation: CER {metrics['val_cer']:.4f}, WER {metrics['val_wer']:.4f}; "
              f"checkpoints in {result['last']} and {result['best']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
