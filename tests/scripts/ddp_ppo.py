"""Run under torchrun with 2 CPU processes (gloo): three PPO updates of a tiny GPT-2 on a token-count reward.

    ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 tests/scripts/ddp_ppo.py OUT_DIR

Every rank writes its initial and final policy and value parameters, the prompts it rolled out, its update
history and the world size to OUT_DIR/rank<r>.pt, so a test can check that the ranks took different prompts,
stayed in sync (gradients all-reduced through the wrapped policy-and-value model) and logged the same
process-averaged metrics. On a CPU, torchrun needs ACCELERATE_USE_CPU=true, or each process trains alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import PartialState

from policy.ppo import train_ppo
from tests.test_ppo import count_e, make_models, small_cfg, word_prompts, word_tokenizer


def main() -> None:
    out = Path(sys.argv[1])
    tok, prompts = word_tokenizer(), word_prompts()
    policy, ref, value = make_models(tok)
    init = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    seen: list[str] = []

    def reward(batch_prompts: list[str], responses: list[str]) -> list[float]:
        seen.extend(batch_prompts)
        return count_e(batch_prompts, responses)

    # 2 processes x 8 rollouts = 16 per update, 3 updates.
    cfg = small_cfg(total_episodes=48, per_device_train_batch_size=8, local_rollout_forward_batch_size=8)
    result = train_ppo(policy, ref, value, tok, prompts, reward, cfg, out / "ppo")
    state = PartialState()
    torch.save(
        {"policy": {k: v.detach().cpu() for k, v in policy.state_dict().items()}, "init": init,
         "value": {k: v.detach().cpu() for k, v in value.state_dict().items()}, "prompts": seen,
         "history": result.history, "world_size": state.num_processes},
        out / f"rank{state.process_index}.pt",
    )


if __name__ == "__main__":
    main()
