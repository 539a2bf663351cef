"""The training loop, for any training task (:mod:`.training_task`: ``restoration`` — MSPFN loss,
validation by PSNR-Y — and the task-driven presets of :mod:`taskderain.train.tasks`: cascade, joint,
detector_on_rain, segmenter): Adam with the decayed lr, resume, DDP, logging and the time budget.

Run layout under ``out``: ``last.pt`` (every ``save_every`` steps and at each epoch end),
``best.pt`` (best validation ``best_metric``), ``log.csv`` (``step,epoch,lr,loss,val_<metric>...``:
one row per optimizer step, one per validation; restoration logs ``val_psnr_y``, task modes
``val_psnr_y`` (with a derainer), ``val_map50_95``, ``val_map50``, ``val_miou`` (with a segmenter))
and ``config.yaml``; at the end ``curves.png`` (loss vs step, each validation metric vs epoch,
from ``log.csv``) and, with ``tensorboard: true``, event files in ``tensorboard/``. Both
checkpoints are derainer checkpoints with training state inside (see
:mod:`taskderain.train.checkpoint`; trained detector / segmenter weights in ``train["stages"]``),
so ``load_derainer(out / "best.pt")`` works and ``resume=true`` continues bit-exactly. The lr of
the first param group is logged (task modes: one group per trained stage, each with its base lr).

Distributed (``torchrun --nproc_per_node=N -m taskderain train CONFIG``; see :mod:`.dist`):
``data.batch`` is the global batch, each rank trains on its ``batch / N`` share of every batch,
gradients are averaged across the ranks — restoration mode through
:class:`~torch.nn.parallel.DistributedDataParallel`, the task modes (whose loss is not the
pipeline's ``forward``) by one flat all-reduce of the gradients after the backward passes — so a
step equals the 1-process step on the same global batch (up to float summation order) when the
loss is a mean over images (MSPFN loss; the detection loss is divided by the per-rank batch, so
the averaged gradient is again the per-image mean; ultralytics' normalisation by the number of
assigned targets and the Dice term are per rank, so task modes match only approximately).
BatchNorm statistics are NOT synchronised (each rank normalises over its own share; trained
detectors / segmenters in ``joint`` mode see per-rank batch statistics, no SyncBatchNorm).
Rank 0 alone validates (the others wait for its metrics), logs, shows progress and writes files;
every rank reads ``last.pt`` when resuming. The logged loss is the mean over the ranks.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
import torch
import yaml

from ..imageio import remove_stale_parts, write_bytes_atomic
from ..inference import resolve_device
from ..models import CheckpointError
from ..config import ConfigError, first_difference
from .allocator import keep_freed_memory
from .callbacks import Callback, StepFunction, build_callbacks, callback_states, load_callback_states
from .checkpoint import load_train_checkpoint, save_train_checkpoint, set_rng_state
from . import dist as D
from .config import RESUME_KEYS, load_train_config, lr_at
from .data import epoch_batches, rank_batches
from .training_task import create_training_task
from ..types import PathLike

LOG_HEADER = "step,epoch,lr,loss,val_psnr_y\n"  # restoration mode


def log_header(metrics: Iterable[str], terms: Iterable[str] = ()) -> str:
    """``step,epoch,lr,loss,loss_<term>...,val_<metric>...``."""
    return "step,epoch,lr,loss," + "".join(f"loss_{t}," for t in terms) + ",".join(f"val_{m}" for m in metrics) + "\n"


class Trainer:
    """Trains a derainer on (rainy, clean) pairs; build from a validated config, then :meth:`fit`.

    Args:
        config: a dict from :func:`~taskderain.train.config.load_train_config`.
        callback: called as ``callback(trainer)`` after every optimizer step (after any save),
            e.g. for custom logging or early stops; under torchrun on every rank (``trainer.rank``).
        callbacks: :class:`~taskderain.train.callbacks.Callback` instances (hooks at step,
            validation, epoch and checkpoint; their state goes into the checkpoints), run after
            those of the config's ``callbacks`` list.

    Under torchrun, build it inside an initialised process group (:func:`train` does that); a
    Trainer made without one trains alone in each process.
    """

    def __init__(self, config: Dict[str, Any], callback: Optional[Callable[["Trainer"], None]] = None,
                 callbacks: Sequence[Callback] = ()) -> None:
        self.config = config
        self.callbacks: List[Callback] = [*build_callbacks(config["callbacks"]), *callbacks,
                                          *([StepFunction(callback)] if callback is not None else [])]
        self.out = Path(config["out"])
        self.device = resolve_device(config["device"])
        self.rank, self.world = D.rank(), D.world_size()
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", D.local_rank())
        if self.device.type == "cpu" and config["keep_freed_memory"]:
            keep_freed_memory()  # ~35 % faster CPU steps: no page faults (see .allocator)
        seed = config["seed"]
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        o, d = config["optim"], config["data"]
        self.task = create_training_task(config, self.device)  # what the mode trains, its loss, its validation
        self.model, self.pipeline, self.terms = self.task.derainer, self.task.pipeline, self.task.terms
        self.train_set, self.indices, self.val_set = self.task.train_set, self.task.indices, self.task.val_set
        self.metric_names = self.task.metric_names
        self.term_names = self.task.term_names
        self.last_parts: Dict[str, float] = {}  # the last step's loss terms (unweighted)
        if d["batch"] % self.world:
            raise ConfigError(f"train config: 'data.batch' ({d['batch']}, the global batch) must be divisible by "
                              f"the number of processes ({self.world}); each trains on data.batch / {self.world}")
        self.ddp: Optional[torch.nn.Module] = self.task.distribute() if self.world > 1 else None
        self.optimizer = torch.optim.Adam(self.task.param_groups(), lr=lr_at(0, o), betas=tuple(o["betas"]),
                                          weight_decay=o["weight_decay"])
        self.accumulate = config["accumulate"]
        self.steps_per_epoch = len(epoch_batches(self.indices, d["batch"], seed, 0)) // self.accumulate
        if self.steps_per_epoch == 0:
            raise ConfigError(f"train config: 'accumulate' {self.accumulate} exceeds the "
                              f"{len(self.indices) // d['batch']} batch(es) of one epoch; lower it")
        total = [n for n in (config["steps"], config["epochs"] and config["epochs"] * self.steps_per_epoch) if n]
        self.total_steps = min(total)
        self.amp_dtype = torch.bfloat16 if config["amp"] else None
        self.step = self.epoch = self.pos = self.log_rows = 0
        self.best: Optional[float] = None
        self.last_metric: Optional[float] = None  # of best_metric
        self.last_metrics: Dict[str, Optional[float]] = {k: None for k in self.metric_names}
        self.last_val_step = -1
        self.deadline: Optional[float] = None  # time.monotonic() at which the ``time`` budget ends
        self.stopped_by_time = False
        self.writer: Any = None  # TensorBoard SummaryWriter (rank 0, tensorboard=true), opened by fit
        if config["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter  # noqa: F401
            except ImportError as exc:
                raise ConfigError(f"train config: 'tensorboard' is true but TensorBoard is not usable ({exc}); "
                                  "pip install tensorboard, or set tensorboard=false") from None

    @property
    def trained(self) -> torch.nn.Module:
        """The module in training: the derainer (restoration) or the whole pipeline (task modes)."""
        return self.task.trained

    # -- state ---------------------------------------------------------------------------------
    def state(self) -> Dict[str, Any]:
        """The training state stored in checkpoints (RNG states are added when saving)."""
        return {"config": self.config, "step": self.step, "epoch": self.epoch, "pos": self.pos,
                "optimizer": self.optimizer.state_dict(), "best": self.best, "last_metric": self.last_metric,
                "last_val_step": self.last_val_step, "log_rows": self.log_rows,
                "last_metrics": dict(self.last_metrics), "stages": self.task.stage_states(),
                "plugins": {"loss_terms": self.terms.state_dict() if self.terms is not None else {},
                            "callbacks": callback_states(self.callbacks)}}

    def save(self, name: str) -> Path:
        metrics = {k: v for k, v in self.last_metrics.items() if v is not None}
        d = self.config["data"]
        meta = {"training_data": d["paired"] or d["images"] or d["detection"], "metrics": metrics,
                "step": self.step}
        if not D.is_main():  # rank 0 writes the checkpoints
            path = self.out / name
        else:
            path = save_train_checkpoint(self.out / name, self.model, self.state(), meta)
        for callback in self.callbacks:
            callback.on_checkpoint(self, path)
        return path

    def resume(self, path: PathLike) -> None:
        """Load model, optimizer, counters, RNG states and the log position from ``path``."""
        obj = load_train_checkpoint(path)
        train = obj["train"]
        for key in RESUME_KEYS:
            if key not in train["config"]:  # a checkpoint from before the key existed
                continue
            then, now = train["config"].get(key), self.config[key]
            if key == "data" and isinstance(then, dict):  # the worker count does not change the batches
                then, now = {**then, "workers": 0}, {**now, "workers": 0}
            differ = first_difference(then, now, key)
            if differ:
                raise CheckpointError(f"cannot resume from {path}: '{differ[0]}' differs (checkpoint {differ[1]!r}, "
                                      f"now {differ[2]!r}); resume with the same settings or start a new run "
                                      "(another out)")
        try:
            self.model.load_state_dict(obj["state_dict"])
            self.task.load_stage_states(train.get("stages") or {})
            self.optimizer.load_state_dict(train["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path} does not fit the model/optimizer of this config: "
                                  f"{(str(exc).splitlines() or [''])[0]}") from None
        for key in ("step", "epoch", "pos", "best", "last_metric", "last_metrics", "last_val_step", "log_rows"):
            setattr(self, key, train.get(key, getattr(self, key)))
        plugins = train.get("plugins") or {}
        if self.terms is not None:
            self.terms.load_state_dict(plugins.get("loss_terms") or {})
        load_callback_states(self.callbacks, plugins.get("callbacks"))
        set_rng_state(train["rng"])
        if not D.is_main():
            return
        log = self.out / "log.csv"
        lines = (log.read_text().splitlines(keepends=True)[: self.log_rows + 1] if log.exists()
                 else [log_header(self.metric_names, self.term_names)])
        write_bytes_atomic(log, "".join(lines).encode())  # drop rows of steps done after the checkpoint

    # -- logging -------------------------------------------------------------------------------
    def _log(self, lr: Optional[float], loss: Optional[float], metrics: Optional[Dict[str, float]] = None,
             parts: Optional[Dict[str, float]] = None) -> None:
        fmt = lambda v: "" if v is None else f"{v:.9g}"  # noqa: E731
        values = ",".join(fmt((metrics or {}).get(k)) for k in self.metric_names)
        terms = "".join(fmt((parts or {}).get(t)) + "," for t in self.term_names)
        self.log_rows += 1
        if not D.is_main():
            return
        with open(self.out / "log.csv", "a") as handle:
            handle.write(f"{self.step},{self.epoch},{fmt(lr)},{fmt(loss)},{terms}{values}\n")
        if self.writer is not None:
            scalars = {"train/lr": lr, "train/loss": loss, **{f"train/loss_{k}": v for k, v in (parts or {}).items()},
                       **{f"val/{k}": v for k, v in (metrics or {}).items()}}
            for tag, value in scalars.items():
                if value is not None:
                    self.writer.add_scalar(tag, value, self.step)

    # -- work ----------------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> Optional[Dict[str, float]]:
        """The task's validation metrics (``metric_names``), None without a validation set."""
        return self.task.validate(self.amp_dtype)

    def _validate_and_log(self) -> bool:
        metrics = D.broadcast_object(self.validate() if D.is_main() else None)  # rank 0 validates
        self.last_val_step = self.step
        if metrics is None:
            return False
        self.last_metrics = {k: metrics.get(k) for k in self.metric_names}
        metric = self.last_metric = float(metrics[self.config["best_metric"]])
        self._log(None, None, metrics)
        for callback in self.callbacks:
            callback.on_validation_end(self, metrics)
        improved = self.best is None or metric > self.best or (math.isnan(self.best) and not math.isnan(metric))
        if improved:
            self.best = metric
        return improved

    def _end_epoch(self) -> None:
        improved = False
        if (self.epoch + 1) % self.config["val_every"] == 0:
            improved = self._validate_and_log()
        self.epoch, self.pos = self.epoch + 1, 0
        for callback in self.callbacks:
            callback.on_epoch_end(self)
        if improved:  # best before last: a kill in between redoes this validation on resume
            self.save("best.pt")
        self.save("last.pt")

    def _train_steps(self, progress) -> None:
        """Optimizer steps of the current epoch from ``pos`` until its end or the last step."""
        d, acc = self.config["data"], self.accumulate
        batches = epoch_batches(self.indices, d["batch"], self.config["seed"], self.epoch)[: self.steps_per_epoch * acc]
        batches = rank_batches(batches, self.rank, self.world)
        batches_left = iter(self.task.loader(batches[self.pos * acc:], self.epoch, d["workers"]))
        self.trained.train()
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        while self.pos < self.steps_per_epoch and self.step < self.total_steps:
            for group in self.optimizer.param_groups:
                group["lr"] = lr_at(self.step, self.config["optim"], group.get("base_lr"))
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum = 0.0
            part_sums: Dict[str, float] = {}
            for micro in range(acc):
                batch = next(batches_left)
                # DDP: all-reduce the gradients on the last micro-batch only
                skip_sync = self.ddp is not None and micro < acc - 1
                with self.ddp.no_sync() if skip_sync else contextlib.nullcontext():
                    loss, parts = self.task.loss(batch, self.step, self.amp_dtype, self.ddp)
                    loss = loss / acc
                    for k, v in parts.items():
                        part_sums[k] = part_sums.get(k, 0.0) + v / acc
                    loss.backward()
                loss_sum += float(loss.detach())
            if self.world > 1:
                if self.ddp is None:
                    D.average_gradients(params)
                loss_sum = D.all_reduce_mean(loss_sum, self.device)
                part_sums = D.all_reduce_parts(part_sums, self.term_names, self.device)
            if not math.isfinite(loss_sum):
                last = self.out / "last.pt"
                saved = (f"last checkpoint: {last}" if last.exists()
                         else "no checkpoint was saved yet; check the data and model.weights")
                terms = (" (terms: " + ", ".join(f"{k} {v:.4g}" for k, v in part_sums.items()) + ")") if part_sums else ""
                raise FloatingPointError(f"loss is {loss_sum}{terms} at step {self.step + 1}; lower optim.lr or "
                                         f"set grad_clip ({saved})")
            if self.config["grad_clip"] is not None:
                torch.nn.utils.clip_grad_norm_(params, self.config["grad_clip"])
            self.optimizer.step()
            self.step, self.pos = self.step + 1, self.pos + 1
            self.last_parts = part_sums
            self._log(lr, loss_sum, parts=part_sums)
            progress.update(1)
            progress.set_postfix(epoch=self.epoch, loss=f"{loss_sum:.4f}", refresh=False)
            if self.config["save_every"] and self.step % self.config["save_every"] == 0:
                self.save("last.pt")
            for callback in self.callbacks:
                callback.on_step_end(self)
            if self._out_of_time():
                self.total_steps = self.step

    def _out_of_time(self) -> bool:
        """True once the ``time`` budget (hours) is spent; rank 0 decides for every rank."""
        if self.deadline is None:
            return False
        spent = D.broadcast_object(time.monotonic() >= self.deadline if D.is_main() else None)
        if spent and not self.stopped_by_time:
            self.stopped_by_time = True
            if D.is_main():
                print(f"taskderain train: time budget of {self.config['time']} h reached at step {self.step}; "
                      "validating and saving (resume=true with more time continues)", flush=True)
        return bool(spent)

    def fit(self) -> Dict[str, Any]:
        """Train to ``total_steps`` (resuming from ``out/last.pt`` when ``resume``); returns a summary.

        Returns:
            ``{"step", "epoch", <metric> (last validation of each of ``metric_names``, or None),
            "best_<best_metric>", "out", "last", "best" (path or None), "log", "world_size" (processes),
            "stopped_by_time" (the ``time`` budget ended the run)}``; restoration:
            ``psnr_y`` (dB) and ``best_psnr_y``.
        """
        from tqdm import tqdm

        last = self.out / "last.pt"
        if self.config["time"] is not None:
            self.deadline = time.monotonic() + 3600.0 * self.config["time"]
        if self.config["resume"]:
            if not last.exists():
                raise FileNotFoundError(f"resume=true but there is no {last}; start without resume")
            self.resume(last)
        else:
            if last.exists():
                raise ConfigError(f"{self.out} already holds a run ({last}); set resume=true to continue it, "
                                  "or choose another out")
            D.barrier()  # every rank has seen that there is no run yet before rank 0 writes
            if D.is_main():
                self.out.mkdir(parents=True, exist_ok=True)
                write_bytes_atomic(self.out / "log.csv", log_header(self.metric_names, self.term_names).encode())
        if D.is_main():
            remove_stale_parts(self.out)  # temporary files of a run killed mid-write
            write_bytes_atomic(self.out / "config.yaml", yaml.safe_dump(self.config, sort_keys=False).encode())
        if self.config["tensorboard"] and D.is_main():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out / "tensorboard"), purge_step=self.step + 1)
        try:
            with tqdm(total=self.total_steps, initial=self.step, desc="train", unit="step",
                      disable=None if D.is_main() else True) as progress:
                while True:
                    if self.pos >= self.steps_per_epoch:
                        self._end_epoch()
                        continue
                    if self.step >= self.total_steps:
                        break
                    self._train_steps(progress)
            if self.last_val_step != self.step and self.val_set is not None:
                if self._validate_and_log():
                    self.save("best.pt")
            self.save("last.pt")
        finally:
            if self.writer is not None:
                self.writer.close()
                self.writer = None
        if D.is_main():
            from .curves import write_curves

            write_curves(self.out / "log.csv", self.out / "curves.png")
        D.barrier()  # the files are written before any rank returns
        best = self.out / "best.pt"
        return {"step": self.step, "epoch": self.epoch, **self.last_metrics,
                f"best_{self.config['best_metric']}": self.best, "out": str(self.out), "last": str(last),
                "best": str(best) if best.exists() else None, "log": str(self.out / "log.csv"),
                "world_size": self.world, "stopped_by_time": self.stopped_by_time}


def train(config: Union[PathLike, Dict[str, Any]], overrides: Iterable[str] = (),
          callback: Optional[Callable[[Trainer], None]] = None, callbacks: Sequence[Callback] = ()) -> Dict[str, Any]:
    """Train from a YAML path or dict plus ``key=value`` overrides; see :meth:`Trainer.fit` for the result.

    Under torchrun (``WORLD_SIZE > 1``) this initialises the process group first and destroys it
    at the end, also on errors (see :mod:`.dist`); every rank returns the summary.
    """
    config = load_train_config(config, overrides)
    with D.distributed(resolve_device(config["device"])):
        return Trainer(config, callback, callbacks).fit()
