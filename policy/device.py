"""Where every model of a stage lives: one rule, resolved once per stage from `run.device` and `run.dtype`.

    placement = resolve_placement("auto", "bfloat16")   # cuda:0 with bf16 frozen models, or the CPU in fp32
    scorer_model = place(model, placement.device, placement.frozen_dtype)

Why one rule: before it, each caller chose (the reward scorer defaulted to the CPU and no stage passed a
device), so on a GPU the reward model scored every PPO rollout on the CPU and eval-policy never left it.

- `run.device`: `auto` (CUDA when torch sees a GPU, else the CPU), `cpu`, or `cuda` (an error without one).
  Under `accelerate launch` / torchrun, `cuda` is this process's GPU (`LOCAL_RANK`).
- `run.dtype`: the weights of the models a stage only runs (the reward model when it scores, evaluated and
  frozen policies). `bfloat16` applies on CUDA only: on a CPU bf16 matmuls are slow and change the numbers,
  so frozen models stay float32 there. Models that train keep float32 weights; their section's `bf16`
  setting turns on autocast (PPO's reference policy follows the policy: float32 weights, same autocast, so
  the KL starts at 0).

`place` registers every model it moves (with its HF sub-models) in `PLACED`; `ForwardAudit` records every
HF model that runs a forward while it is active, with its device, dtype and whether `place` put it there.
Tests and `bench/gpu_device_check.py` use the pair to check that a stage left no model behind.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import torch
from transformers import PreTrainedModel

DeviceChoice = Literal["auto", "cpu", "cuda"]
DtypeChoice = Literal["float32", "bfloat16"]
M = TypeVar("M", bound=torch.nn.Module)

# Every HF model `place` moved, sub-models included (a value model's `base_model` runs on its own).
PLACED: "weakref.WeakSet[torch.nn.Module]" = weakref.WeakSet()


@dataclass(frozen=True)
class Placement:
    """The resolved rule: the device of every model, and the dtype of the models a stage only runs."""

    device: torch.device
    frozen_dtype: torch.dtype
    requested: str = "auto"  # run.device as written
    note: str = ""  # why the resolved value differs from the request, if it does

    def describe(self) -> str:
        dtype = str(self.frozen_dtype).removeprefix("torch.")
        text = f"{self.device} (run.device={self.requested}); frozen models in {dtype}, trained ones in float32"
        return f"{text}; {self.note}" if self.note else text


def resolve_placement(device: DeviceChoice = "auto", dtype: DtypeChoice = "float32") -> Placement:
    """`run.device` / `run.dtype` -> a `Placement`; a clear error when `cuda` is asked and there is none."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"run.device={device!r}: expected auto, cpu or cuda")
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"run.dtype={dtype!r}: expected float32 or bfloat16")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise ValueError("run.device=cuda, but torch sees no GPU (torch.cuda.is_available() is False): "
                         "set run.device=auto or cpu, or install a CUDA build of torch")
    on_cuda = device == "cuda" or (device == "auto" and has_cuda)
    resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))) if on_cuda else torch.device("cpu")
    frozen = torch.bfloat16 if dtype == "bfloat16" and on_cuda else torch.float32
    note = "run.dtype=bfloat16 applies on CUDA only: float32 on the CPU" if dtype == "bfloat16" and not on_cuda else ""
    return Placement(resolved, frozen, device, note)


def place(model: M, device: torch.device | str, dtype: torch.dtype | None = None) -> M:
    """Move `model` (and cast its floating-point weights when `dtype` is given); register it in `PLACED`."""
    model.to(device=device, dtype=dtype) if dtype is not None else model.to(device)
    for module in model.modules():
        if isinstance(module, PreTrainedModel):
            PLACED.add(module)
    return model


def same_device(a: torch.device | str, b: torch.device | str) -> bool:
    """`cuda` and `cuda:0` name the same GPU (torch's current device is 0 unless a launch set another)."""
    a, b = torch.device(a), torch.device(b)
    return a.type == b.type and (a.index or 0) == (b.index or 0)


def describe_model(model: torch.nn.Module) -> str:
    """`cuda:0 bfloat16` (device and dtype of its first parameter)."""
    p = next(model.parameters(), None)
    return "no parameters" if p is None else f"{p.device} {str(p.dtype).removeprefix('torch.')}"


@dataclass
class SeenModel:
    """One HF model that ran a forward under `ForwardAudit`."""

    name: str  # class name
    device: str
    dtype: str
    placed: bool  # moved there by `place` (the device rule), not by chance


@dataclass
class ForwardAudit:
    """Context manager: records each HF model (once) the first time it runs a forward.

    A global forward pre-hook, so it also sees models built inside libraries (a TRL trainer's reference model)
    and copies (`copy.deepcopy` of a placed model is not placed). For tests and device checks, not for runs.
    """

    seen: list[SeenModel] = field(default_factory=list)
    _ids: "weakref.WeakSet[torch.nn.Module]" = field(default_factory=weakref.WeakSet)
    _handle: object = None

    def _hook(self, module: torch.nn.Module, args: tuple) -> None:
        if not isinstance(module, PreTrainedModel) or module in self._ids:
            return
        self._ids.add(module)
        p = next(module.parameters(), None)
        self.seen.append(SeenModel(type(module).__name__, str(p.device) if p is not None else "-",
                                   str(p.dtype).removeprefix("torch.") if p is not None else "-", module in PLACED))

    def __enter__(self) -> "ForwardAudit":
        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def problems(self, device: torch.device | str) -> list[str]:
        """Every model that ran off `device` or was not placed by the rule (empty: the rule held)."""
        return [f"{m.name} on {m.device} ({'placed' if m.placed else 'never placed by policy.device.place'})"
                for m in self.seen if m.device == "-" or not same_device(m.device, device) or not m.placed]
