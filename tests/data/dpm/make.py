"""DPM-Solver++ parity vectors: diffusers 0.42.1's DPMSolverMultistepScheduler, run step by step.

    python tests/data/dpm/make.py      (in the venv of `make venv`: torch and diffusers from PyPI)

writes dpm.safetensors next to itself. For each case (a scheduler config and a number of steps)
it records the timesteps, the sigmas, the sample x_T the run starts from, the model output fed to
each step (seeded random tensors: step() does not care where they come from) and the sample
after each step. tests/sampling.rs runs our solver on the same inputs.
"""

import os

import torch
from diffusers import DPMSolverMultistepScheduler
from safetensors.torch import save_file

SHAPE = (2, 1, 8, 8)
# name: (scheduler arguments beside diffusers' defaults, steps)
CASES = {
    "linear_eps_1": ({}, 1),
    "linear_eps_2": ({}, 2),
    "linear_eps_5": ({}, 5),
    "linear_eps_10": ({}, 10),
    "linear_eps_20": ({}, 20),
    "linear_eps_50": ({}, 50),
    "cosine_eps_20": ({"beta_schedule": "squaredcos_cap_v2"}, 20),
    "scaled_eps_25": ({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}, 25),
    "linear_sample_20": ({"prediction_type": "sample"}, 20),
    "linear_v_20": ({"prediction_type": "v_prediction"}, 20),
    "linear_karras_20": ({"use_karras_sigmas": True}, 20),
    "scaled_karras_10": ({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012, "use_karras_sigmas": True}, 10),
}


def main():
    out = {}
    for seed, (name, (kwargs, steps)) in enumerate(CASES.items()):
        sched = DPMSolverMultistepScheduler(num_train_timesteps=1000, **kwargs)
        sched.set_timesteps(steps)
        gen = torch.Generator().manual_seed(2000 + seed)
        x = torch.randn(SHAPE, generator=gen)
        out[f"{name}.x_T"] = x.clone()
        outputs, samples = [], []
        for t in sched.timesteps:
            model_output = torch.randn(SHAPE, generator=gen)
            x = sched.step(model_output, t, x).prev_sample
            outputs.append(model_output)
            samples.append(x.clone())
        out[f"{name}.timesteps"] = sched.timesteps.clone().to(torch.int64)
        out[f"{name}.sigmas"] = sched.sigmas.clone().to(torch.float32)
        out[f"{name}.model_outputs"] = torch.stack(outputs)
        out[f"{name}.samples"] = torch.stack(samples)
    here = os.path.dirname(os.path.abspath(__file__))
    save_file({k: v.contiguous() for k, v in out.items()}, os.path.join(here, "dpm.safetensors"))


if __name__ == "__main__":
    main()
