"""Training tasks as plug-ins: a new mode is one registered class; the loop runs, logs and resumes it."""

from __future__ import annotations

import pytest
import torch

from taskderain.config import ConfigError
from taskderain.train import Trainer, load_train_checkpoint, load_train_config, train
from taskderain.train.restoration import RestorationTask
from taskderain.train.training_task import list_training_tasks, register_training_task, training_task_class

from training_setup import tiny_train_config, write_clean_images

pytestmark = pytest.mark.usefixtures("one_thread")


@register_training_task("restoration_l1")
class L1Restoration(RestorationTask):
    """A user's mode: the restoration task with a plain L1 loss, logged as its own term; it refuses a
    config without online rain (its own check)."""

    @classmethod
    def check_config(cls, config, where):
        if config["data"]["images"] is None:
            raise ConfigError(f"{where}: 'data.images' is required in mode restoration_l1")

    def loss(self, batch, step, amp_dtype, ddp=None):
        derained = (ddp or self.derainer)(batch["rainy"].to(self.device))
        value = (derained.float() - batch["clean"].to(self.device)).abs().mean()
        return value, {"l1": float(value.detach())}

    @property
    def term_names(self):
        return ("l1",)


def test_builtin_modes_are_registered_tasks():
    from taskderain.train.tasks import TaskDrivenTask

    assert {"restoration", "cascade", "joint", "detector_on_rain", "segmenter"} <= set(list_training_tasks())
    assert all(training_task_class(m) is TaskDrivenTask for m in ("cascade", "joint", "detector_on_rain", "segmenter"))
    with pytest.raises(KeyError, match="unknown training mode 'nope'; available: .*restoration"):
        training_task_class("nope")


def test_a_registered_mode_trains_logs_and_resumes_exactly(tmp_path):
    images = write_clean_images(tmp_path / "images", 6)
    ref = train(tiny_train_config(images, tmp_path / "ref", steps=4, mode="restoration_l1"))
    assert ref["step"] == 4 and ref["psnr_y"] is not None  # the inherited validation ran
    header = (tmp_path / "ref" / "log.csv").read_text().splitlines()[0]
    assert header == "step,epoch,lr,loss,loss_l1,val_psnr_y"
    part = tiny_train_config(images, tmp_path / "cut", steps=2, mode="restoration_l1", save_every=1)
    train(part)
    train({**part, "steps": 4, "resume": True})
    a, b = (load_train_checkpoint(tmp_path / r / "last.pt")["state_dict"] for r in ("ref", "cut"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    plain = Trainer(load_train_config(tiny_train_config(images, tmp_path / "plain", steps=1)))
    assert type(plain.task) is RestorationTask and plain.term_names == ()


def test_a_plugin_checks_its_own_config(tmp_path):
    with pytest.raises(ConfigError, match="'data.images' is required in mode restoration_l1"):
        load_train_config({"mode": "restoration_l1", "steps": 1, "data": {"paired": str(tmp_path)}})
