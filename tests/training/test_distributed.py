"""Scale-out training: dist_sync workers on 127.0.0.1 against one process, the launcher, CPU contexts, AMP refusal."""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd, gluon

import data_loader
import main
from model import devices
from model.lipnet import LipNet
from model.training import loop, optimiser, sentence_task
from tests.fake_data import write_fake_clips
from utils import launch
from utils.runtime.cli import parse_args

REPO_ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
# Dropout and augmentation off, so that two workers and one process see exactly the same numbers. Adam
# barely notices a gradient off by a constant factor; a small clip_gradient makes the scale matter.
TINY = ["channels=4,8,8", "hidden=16", "batch_size=2", "num_gpus=0", "progress=false", "val_speakers=3",
        "align_path=/nonexistent", "lr=0.003", "clip_gradient=0.02", "dr_rate=0", "flip_prob=0", "jitter_prob=0",
        "show_examples=0"]
# A worker: train, noting the batch size of every step, then save the network it ended with (every
# rank does; only rank 0 writes checkpoints).
WORKER = """
import logging, os, sys
from mxnet import gluon
import main, trainer
from utils.runtime.cli import parse_args
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
steps, step = [], gluon.Trainer.step
gluon.Trainer.step = lambda self, batch_size, *a, **k: steps.append(batch_size) or step(self, batch_size, *a, **k)
result = trainer.train(parse_args(main.build_parser(), sys.argv[2:]))
out = os.path.join(sys.argv[1], f"worker-{os.getpid()}")
result["net"].save_parameters(out + ".params")
open(out + ".steps", "w").write(" ".join(map(str, steps)))
"""


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("clips")
    write_fake_clips(root)  # 3 speakers x 4 clips; speaker 3 validates: 8 training clips, 4 per worker
    return root


def _launch(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "utils/launch.py", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _train_two_workers(clips: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    out.mkdir(parents=True, exist_ok=True)
    done = _launch("-n", "2", "-s", "1", "--timeout", "240", "--grace", "5", "--", PY, "-c", WORKER, str(out),
                   f"image_path={clips}", f"save_dir={out / 'run'}", "kvstore=dist_sync", *TINY, *extra)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _load(path: Path) -> dict[str, np.ndarray]:
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def _reference(clips: Path, epochs: int) -> list[dict]:
    """One process, one context, whose every step sees worker 0's and worker 1's batches together."""
    args = parse_args(main.build_parser(), [f"image_path={clips}", *TINY, "kvstore=device"])
    loop.seed_everything(args.seed)
    found = data_loader.discover_clips(clips)
    train_ids, val_ids = data_loader.select_clips(found, val_speakers=[3])
    train_records = data_loader.build_records({c: found[c] for c in train_ids}, None)
    val_records = data_loader.build_records({c: found[c] for c in val_ids}, None)
    mean, std = data_loader.channel_stats(train_records, seed=args.seed)
    config = sentence_task.build_config(args, sentence_task.probe_frame_size(train_records))
    size = (config.width, config.height)
    loaders, samplers = [], []
    for rank in (0, 1):
        shard = data_loader.SentenceDataset(data_loader.shard_records(train_records, rank, 2), size=size, train=True,
                                       flip_prob=0, jitter_prob=0, seed=args.seed)
        samplers.append(data_loader.EpochShuffleSampler(len(shard), args.seed))
        loaders.append(data_loader.make_loader(shard, args.batch_size, mean, std, samplers[-1]))
    val_set = data_loader.SentenceDataset(val_records, size=size)
    val_loader = data_loader.make_loader(val_set, args.batch_size, mean, std)
    net = LipNet(config)
    net.initialize(ctx=mx.cpu())
    net.hybridize(static_alloc=True, static_shape=True)
    steps = math.ceil(len(samplers[0]) / args.batch_size)
    opt = optimiser.make_trainer(net, args, steps)
    loss_fn = gluon.loss.CTCLoss(layout="NTC", label_layout="NT")
    history = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for sampler in samplers:
            sampler.epoch = epoch
        for first, second in zip(*loaders):
            data, labels, data_lengths, label_lengths = (mx.nd.concat(a, b, dim=0)
                                                         for a, b in zip(first[:4], second[:4]))
            with autograd.record():
                loss = loss_fn(net(data), labels, data_lengths, label_lengths)
            loss.backward()
            opt.step(data.shape[0])  # the global batch: both workers' clips
            total += float(loss.sum().asscalar())
            count += data.shape[0]
        val = sentence_task.evaluate(net, val_loader, val_set, [mx.cpu()])
        history.append({"params": {k: p.data().asnumpy() for k, p in net._collect_params_with_prefix().items()},
                        "train_loss": total / count, "val_loss": val.loss, "val_cer": val.cer, "val_wer": val.wer})
    return history


@pytest.fixture(scope="module")
def reference(clips: Path) -> list[dict]:
    return _reference(clips, epochs=2)


def _check_workers(out: Path, expected: dict, steps: int) -> None:
    dumps = sorted(out.glob("worker-*.params"))
    assert len(dumps) == 2
    for dump in dumps:  # the Trainer divides the summed gradients by the global batch, 2 workers x 2 clips
        assert dump.with_suffix(".steps").read_text().split() == ["4"] * steps
    first, second = _load(dumps[0]), _load(dumps[1])
    assert first.keys() == second.keys() == expected["params"].keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)  # the very same updates
        np.testing.assert_allclose(first[name], expected["params"][name], rtol=1e-4, atol=1e-5, err_msg=name)
    saved = _load(out / "run" / "last" / "model.params")
    for name in first:
        np.testing.assert_array_equal(saved[name], first[name], err_msg=name)


def _metrics(run: Path) -> list[dict[str, float]]:
    lines = (run / "metrics.csv").read_text().splitlines()
    keys = lines[0].split(",")
    return [dict(zip(keys, map(float, line.split(",")))) for line in lines[1:]]


@pytest.mark.slow
def test_two_workers_equal_one_process_and_resume(clips: Path, tmp_path: Path, reference: list[dict]):
    done = _train_two_workers(clips, tmp_path / "a", "epochs=1")
    assert re.search(r"^\[worker 0\] ", done.stdout, re.M) and re.search(r"^\[worker 1\] ", done.stdout, re.M)
    assert "4 training clips of its own" in done.stdout
    _check_workers(tmp_path / "a", reference[0], steps=2)
    # Only rank 0 writes files; the metrics are the whole job's: global train loss, all validation clips.
    [row] = _metrics(tmp_path / "a" / "run")
    assert row["step"] == 2  # 4 clips per worker, 2 per step
    assert row["train_loss"] == pytest.approx(reference[0]["train_loss"], rel=1e-4)
    assert row["val_loss"] == pytest.approx(reference[0]["val_loss"], rel=1e-4)
    assert (row["val_cer"], row["val_wer"]) == pytest.approx((reference[0]["val_cer"], reference[0]["val_wer"]))
    assert (tmp_path / "a" / "run" / "last" / "trainer.states").stat().st_size > 0  # local Adam state: savable
    assert len(re.findall(r"^\[worker \d\] .*epoch 1: train loss", done.stdout, re.M)) == 2

    # Both workers resume from rank 0's checkpoint (parameters and Adam state) and go on exactly.
    resumed = tmp_path / "b"
    _train_two_workers(clips, resumed, "epochs=2", f"model_path={tmp_path / 'a' / 'run' / 'last'}")
    _check_workers(resumed, reference[1], steps=2)


@pytest.mark.slow
def test_killed_worker_stops_the_job(clips: Path, tmp_path: Path):
    # Also the other synchronous store, with two servers.
    command = [PY, "utils/launch.py", "-n", "2", "-s", "2", "--grace", "3", "--timeout", "240", "--",
               PY, "main.py", f"image_path={clips}", f"save_dir={tmp_path}", "kvstore=dist_device_sync",
               "epochs=1000", *TINY]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids, output, killed = {}, [], None
    for line in proc.stdout:
        output.append(line)
        started = re.match(r"\[launch\] started (.+?) \(pid (\d+)\)", line)
        if started:
            pids[started.group(1)] = int(started.group(2))
        if killed is None and re.match(r"\[worker 1\] .*epoch 1: train loss", line):
            os.kill(pids["worker 1"], signal.SIGKILL)  # mid-run: the job would train for 1000 epochs
            killed = True
    code = proc.wait(timeout=120)
    text = "".join(output)
    assert killed is not None, text[-3000:]
    assert code == 128 + signal.SIGKILL, text[-3000:]
    assert "worker 1 exited with signal SIGKILL; stopping the others" in text
    assert "done, exit status 137" in text
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # every process the launcher started is gone


@pytest.mark.slow
def test_dist_async_trains_and_resumes_without_optimiser_state(clips: Path, tmp_path: Path):
    run = ["-n", "2", "-s", "1", "--timeout", "240", "--grace", "5", "--", PY, "main.py", f"image_path={clips}",
           f"save_dir={tmp_path}", "kvstore=dist_async", *TINY]
    done = _launch(*run, "epochs=1")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("4 training clips of its own, 4 validation clips") == 2  # each validates everything
    assert (tmp_path / "last" / "model.params").is_file()
    assert not (tmp_path / "last" / "trainer.states").exists()  # Adam's state lives on the servers
    done = _launch(*run, "epochs=2", f"model_path={tmp_path / 'last'}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stdout.count("Adam restarts from zero moments") == 2
    assert [row["epoch"] for row in _metrics(tmp_path)] == [1, 2]


@pytest.mark.parametrize("kvstore", ["device", "local"])
def test_two_cpu_contexts_equal_one(clips: Path, tmp_path: Path, kvstore: str):
    args = [f"image_path={clips}", *TINY, "batch_size=4", "epochs=2", "flip_prob=0.5", "jitter_prob=0.05"]
    assert main.main([*args, f"save_dir={tmp_path / 'one'}"]) == 0
    assert main.main([*args, f"save_dir={tmp_path / 'two'}", "num_cpus=2", f"kvstore={kvstore}"]) == 0
    one, two = _load(tmp_path / "one" / "last" / "model.params"), _load(tmp_path / "two" / "last" / "model.params")
    assert one.keys() == two.keys()
    for name in one:
        np.testing.assert_allclose(two[name], one[name], rtol=1e-4, atol=1e-5, err_msg=name)
    assert _metrics(tmp_path / "two")[-1]["val_loss"] == pytest.approx(_metrics(tmp_path / "one")[-1]["val_loss"],
                                                                       rel=1e-4)


def test_split_batch_spreads_over_contexts():
    batch = (mx.nd.zeros((5, 3)), mx.nd.ones((5, 2)), mx.nd.ones(5), mx.nd.ones(5), np.arange(5))
    parts = devices.split_batch(batch, [mx.cpu(0), mx.cpu(1)])
    assert [p[0].context for p in parts] == [mx.cpu(0), mx.cpu(1)]
    assert [p[4].tolist() for p in parts] == [[0, 1, 2], [3, 4]]


def test_amp_on_cpu_is_refused(clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path}", *TINY, "amp=true"]) == 2
    assert "amp=true needs GPUs" in caplog.text
    assert not (tmp_path / "last").exists()


def test_dist_store_without_launcher_is_refused(clips: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DMLC_ROLE", raising=False)
    assert main.main([f"image_path={clips}", f"save_dir={tmp_path}", *TINY, "kvstore=dist_sync"]) == 2
    assert "utils/launch.py" in caplog.text
    with pytest.raises(SystemExit):
        main.main([*TINY, "kvstore=dist_nonsense"])


def _record(clip_id: str) -> data_loader.ClipRecord:
    return data_loader.ClipRecord(clip_id, Path(f"{clip_id}.npz"), "bin blue at a one again")


def test_shards_are_equal_deterministic_and_cover_everything():
    records = [_record(f"s1/c{i:02d}") for i in range(7)]
    shards = [data_loader.shard_records(records, rank, 3) for rank in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]  # 7 wrapped around to 9
    assert {r.clip_id for s in shards for r in s} == {r.clip_id for r in records}
    assert shards == [data_loader.shard_records(records[::-1], rank, 3) for rank in range(3)]  # order-free
    uneven = [data_loader.shard_records(records, rank, 3, equal=False) for rank in range(3)]
    assert sorted(r.clip_id for s in uneven for r in s) == sorted(r.clip_id for r in records)  # no repeats
    # Fewer clips than workers: every worker still gets one, so that all take the same steps.
    assert data_loader.shard_records(records[:1], 0, 2) == data_loader.shard_records(records[:1], 1, 2) == records[:1]
    with pytest.raises(ValueError, match="rank 3"):
        data_loader.shard_records(records, 3, 3)


# The launcher's own logic, with plain Python roles (no MXNet): fast.
ROLE_SCRIPT = ("import os, sys, time; role = os.environ['DMLC_ROLE']; "
               "print(role, os.environ['DMLC_PS_ROOT_URI'], os.environ['DMLC_PS_ROOT_PORT'], "
               "os.environ['DMLC_NUM_WORKER'], os.environ['DMLC_NUM_SERVER'], os.environ.get('EXTRA'), os.getcwd()); "
               "sys.stdout.flush(); ")


def test_launcher_passes_roles_and_prefixes_output():
    done = _launch("-n", "2", "-s", "2", "--env", "EXTRA=x y", "--", PY, "-c", ROLE_SCRIPT, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("scheduler", "server 0", "server 1", "worker 0", "worker 1"):
        [line] = [line for line in lines if line.startswith(f"[{name}] ")]
        role, uri, port, workers, servers, rest = line[len(name) + 3:].split(" ", 5)
        assert (role, uri, workers, servers) == (name.split()[0], "127.0.0.1", "2", "2")
        assert 1024 <= int(port) < 65536
        assert rest == f"x y {REPO_ROOT}"


def test_launcher_stops_everything_when_one_fails():
    script = ROLE_SCRIPT + "sys.exit(3) if role == 'worker' else time.sleep(600)"
    done = _launch("-n", "1", "--grace", "2", "--", PY, "-c", script, timeout=60)  # no hang: well within 60 s
    assert done.returncode == 3
    assert "worker 0 exited with code 3; stopping the others" in done.stderr
    assert "sent SIGTERM to scheduler, server 0" in done.stderr


def test_launcher_timeout_and_bad_arguments(tmp_path: Path):
    done = _launch("-n", "1", "--timeout", "1", "--grace", "1", "--", PY, "-c", "import time; time.sleep(60)",
                   timeout=60)
    assert done.returncode == launch.TIMEOUT_EXIT
    assert "--timeout 1 s reached" in done.stderr
    assert _launch("-n", "1").returncode == 2  # no command
    assert _launch("-n", "1", "--launcher", "ssh", "--", "true").returncode == 2  # no host file
    assert _launch("-n", "1", "--env", "NOEQUALS", "--", "true").returncode == 2
    assert _launch("-n", "0", "--", "true").returncode == 2


def test_hostfile_parsing(tmp_path: Path):
    hosts = tmp_path / "hosts"
    hosts.write_text("# cluster\nnode1\n\nalice@node2  # second\n")
    assert launch.read_hostfile(hosts) == ["node1", "alice@node2"]
    hosts.write_text("node1 node2\n")
    with pytest.raises(ValueError, match="line 1: expected one host per line"):
        launch.read_hostfile(hosts)
    hosts.write_text("# nobody\n")
    with pytest.raises(ValueError, match="no hosts"):
        launch.read_hostfile(hosts)
    with pytest.raises(ValueError, match="cannot read"):
        launch.read_hostfile(tmp_path / "missing")


def test_ssh_commands_are_built_and_quoted():
    roles = launch.plan(3, 2, ["n1", "n2"], "10.0.0.1", 9000, {"OMP_NUM_THREADS": "8"})
    assert [(r.name, r.host) for r in roles] == [
        ("scheduler", None), ("server 0", "n1"), ("server 1", "n2"),
        ("worker 0", "n1"), ("worker 1", "n2"), ("worker 2", "n1")]
    worker = roles[3]
    assert worker.env["DMLC_ROLE"] == "worker" and worker.env["DMLC_NUM_WORKER"] == "3"
    argv = launch.ssh_command(["ssh", "-tt"], "n1", "/srv/lip net", worker.env,
                              ["python", "main.py", "save_dir=/tmp/a b", "x='y'"])
    assert argv[:3] == ["ssh", "-tt", "n1"]
    remote = shlex.split(argv[3])
    assert remote[:4] == ["cd", "/srv/lip net", "&&", "env"]
    assert "DMLC_PS_ROOT_URI=10.0.0.1" in remote and "DMLC_PS_ROOT_PORT=9000" in remote
    assert "OMP_NUM_THREADS=8" in remote and "DMLC_ROLE=worker" in remote
    assert remote[-4:] == ["python", "main.py", "save_dir=/tmp/a b", "x='y'"]


def test_ssh_launcher_runs_remote_commands(tmp_path: Path):
    """A stand-in ``ssh`` that logs the host and runs the remote command here, as sshd would."""
    fake = tmp_path / "fake-ssh"
    fake.write_text(f'#!/bin/sh\necho "$1" >> {tmp_path / "hosts.log"}\nexec sh -c "$2"\n')
    fake.chmod(0o755)
    hosts = tmp_path / "hosts"
    hosts.write_text("alpha\nbeta\n")
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    done = _launch("-n", "2", "-s", "1", "--launcher", "ssh", "-H", str(hosts), "--host_ip", "127.0.0.1",
                   "--ssh", str(fake), "--workdir", str(workdir), "--env", "EXTRA=remote",
                   "--", PY, "-c", ROLE_SCRIPT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted((tmp_path / "hosts.log").read_text().split()) == ["alpha", "alpha", "beta"]  # server 0, workers
    assert "started worker 1 on beta" in done.stderr
    for name in ("server 0", "worker 0", "worker 1"):
        [line] = [line for line in done.stdout.splitlines() if line.startswith(f"[{name}] ")]
        assert line.endswith(f"remote {workdir}")
    [scheduler] = [line for line in done.stdout.splitlines() if line.startswith("[scheduler] ")]
    assert scheduler.endswith(f"remote {REPO_ROOT}")  # the scheduler runs here


def test_free_port_is_bindable():
    port = launch.free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@pytest.mark.slow
def test_scale_bench_runs_and_reports(clips: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    from bench import scale

    scale.make_corpus(tmp_path, clips_per_speaker=1, size=(48, 24))  # what it trains on without --image_path
    assert len(list((tmp_path / "datasets").glob("s*/*.npz"))) == 4
    assert len(list((tmp_path / "align" / f"s{scale.VAL_SPEAKER}").glob("*.align"))) == 2
    assert scale.main(["--workers", "2", "--image_path", str(clips), "--align_path", "/nonexistent",
                       "--val_speakers", "3", "--channels", "4,8,8", "--hidden", "16", "--batch_size", "2",
                       "--epochs", "2", "--timeout", "240"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["workers"], r["global_batch"]) for r in report["results"]] == [(1, 2), (2, 4)]
    assert all(r["samples_per_s"] > 0 for r in report["results"])
    for bad in (["--epochs", "1"], ["--workers", "0"]):
        with pytest.raises(SystemExit):
            scale.main(bad)
