"""Policy snapshots during PPO: the points of eval-policy's over-optimization curve.

    snapshots = PolicySnapshots(policy, tokenizer, out / "snapshots", every=10, last=num_updates)
    train_ppo(..., log=lambda metrics, step: snapshots(step))      # saves step-0000010, step-0000020, ...
    for update, path in list_snapshots(out): ...

Each snapshot is a plain HF model directory (LoRA layers merged), written atomically (tmp + rename).
"""

from __future__ import annotations

import copy
import os
import re
import shutil
from pathlib import Path

from transformers import PreTrainedModel, PreTrainedTokenizerBase

SNAPSHOT = re.compile(r"^step-(\d+)$")


def _merged_policy(policy: PreTrainedModel) -> PreTrainedModel:
    """The policy as a plain HF model: a copy with any LoRA layers (peft injects them in place) merged."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # pragma: no cover - peft is a dependency
        return policy
    if not any(isinstance(m, BaseTunerLayer) for m in policy.modules()):
        return policy
    merged = copy.deepcopy(policy)
    for name, module in list(merged.named_modules()):
        if isinstance(module, BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            setattr(merged.get_submodule(parent_name) if parent_name else merged, child, module.get_base_layer())
    return merged


class PolicySnapshots:
    """Saves the policy every `every` updates and at `last` into `root/step-NNNNNNN` (atomically: tmp + rename).

    Called from PPO's log callback, which runs after the update's optimizer steps, so a snapshot holds the
    weights after that update. A resumed run rewrites the snapshots of the updates it repeats.
    """

    def __init__(self, policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, root: Path, every: int, last: int):
        self.policy, self.tokenizer, self.root, self.every, self.last = policy, tokenizer, root, every, last

    def __call__(self, step: int) -> None:
        if step % self.every and step != self.last:
            return
        final = self.root / f"step-{step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _merged_policy(self.policy).save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)


def list_snapshots(ppo_dir: Path) -> list[tuple[int, Path]]:
    """(update, directory) of every complete PPO policy snapshot, by update."""
    found = []
    for path in (ppo_dir / "snapshots").glob("step-*"):
        m = SNAPSHOT.match(path.name)
        if m and (path / "config.json").is_file():
            found.append((int(m.group(1)), path))
    return sorted(found)
