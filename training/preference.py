"""ORPO and CPO/SimPO: preference objectives that read the same pairs as DPO but keep no reference model.

Both come from TRL's experimental package (trl 1.16 `trl.experimental.orpo` / `trl.experimental.cpo`,
pinned in requirements.txt and run by tests/test_rewards_objectives.py). ORPO adds an odds-ratio term to
the usual answer loss, so one pass does SFT and preference tuning at once; CPO does the same with a
DPO-like term, and its `simpo` loss is SimPO (length-normalised rewards with a target margin).
"""

from __future__ import annotations

import warnings
from pathlib import Path

with warnings.catch_warnings():  # TRL warns on every import that these APIs may change; they are pinned here
    warnings.simplefilter("ignore")
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from training.spec import JobSpec

SIMPO_GAMMA = 0.5  # SimPO's target margin (TRL's default, the paper's starting point)


def _arguments(spec: JobSpec, plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding):
    from training.engine import training_arguments

    return training_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding)


def to_orpo_config(spec: JobSpec, plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None):
    # beta is ORPO's lambda: the weight of the odds-ratio term beside the answer loss (0.1 in the paper)
    return ORPOConfig(
        **_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding), beta=spec.method.dpo_beta
    )


def to_cpo_config(spec: JobSpec, plan, output_dir: Path, gradient_checkpointing: bool, has_eval: bool, sharding=None):
    simpo = spec.method.preference_loss == "simpo"
    return CPOConfig(
        **_arguments(spec, plan, output_dir, gradient_checkpointing, has_eval, sharding),
        beta=spec.method.dpo_beta,
        loss_type="simpo" if simpo else "sigmoid",
        cpo_alpha=0.0 if simpo else 1.0,  # pure SimPO has no likelihood term; CPO keeps it
        simpo_gamma=SIMPO_GAMMA,
    )


PREFERENCE_CONFIG_FOR = {"orpo": to_orpo_config, "cpo": to_cpo_config}
PREFERENCE_TRAINER_FOR = {"orpo": ORPOTrainer, "cpo": CPOTrainer}
