"""A LoRA on the trained digits models (scripts/harness/digits_models.py) that changes what they draw: with it every
class label draws the next digit (label l draws (l + 1) mod 10; the unconditional code stays as it was), the kind
of change a LoRA makes to a real model's concepts. Low-rank deltas on every Linear layer inside the transformer
blocks, the base frozen, trained with the base's own flow-matching loss through BaseModel.apply_model.

The file is a LoRA in the generic key format ComfyUI's loader reads (comfy.lora.model_lora_keys_unet):
`diffusion_model.<module>.lora_up.weight` (out x rank), `.lora_down.weight` (rank x in) and `.alpha`, merged as
W + strength * alpha / rank * up @ down. It is cached beside the trained weights with a hash of its recipe (and of
the base model's) in the name, and loaded through ComfyUI's own LoraLoaderModelOnly node function.

Why a class shift: it is learned by the conditioning path alone, so the ideal LoRA model is the base model asked
for the next label, and its output from a seed is the base model's output for label + 1 from that seed. That gives
a check with no classifier: PSNR of the LoRA's image for l against the base's for l + 1 (high) and for l (low).
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import digits_models as dm

# the blocks' own modules (Wan: blocks.N; Flux: double_blocks.N, single_blocks.N), not the embedders or the head
IN_BLOCK = re.compile(r"^(blocks|double_blocks|single_blocks)\.\d+\.")


@dataclass(frozen=True)
class LoraRecipe:
    model: str                 # the digits model (digits_models.RECIPES) it is trained on
    rank: int = 8
    alpha: float = 8.0
    steps: int = 800
    batch: int = 64
    lr: float = 3e-3
    label_dropout: float = 0.1     # as the base: the unconditional code keeps seeing every class
    seed: int = 0

    def key(self) -> str:
        base = dm.RECIPES[self.model].key()      # retrained base weights make another LoRA
        fields = {**asdict(self), "change": "label+1", "base": base}
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def path(self) -> Path:
        return dm.CACHE / f"digits_{self.model}_lora_{self.key()}.safetensors"


RECIPES = {"wan": LoraRecipe("wan"), "flux": LoraRecipe("flux")}


def shifted(label: int) -> int:
    """The class the LoRA draws for `label`."""
    return (label + 1) % 10


def targets(net: torch.nn.Module) -> dict[str, torch.nn.Linear]:
    """The Linear layers inside the transformer blocks, by module name."""
    return {name: m for name, m in net.named_modules() if IN_BLOCK.match(name) and isinstance(m, torch.nn.Linear)}


class Adapters:
    """Low-rank deltas on `net`'s block Linears, added to each layer's output by a forward hook while attached (the
    base weights stay as they are): out + alpha / rank * up(down(x)). up starts at zero, so the model starts as the
    base."""

    def __init__(self, net: torch.nn.Module, rank: int, alpha: float, g: torch.Generator):
        self.scale = alpha / rank
        self.layers = targets(net)
        self.down = {n: (torch.randn(rank, m.in_features, generator=g) / m.in_features ** 0.5).requires_grad_()
                     for n, m in self.layers.items()}
        self.up = {n: torch.zeros(m.out_features, rank, requires_grad=True) for n, m in self.layers.items()}
        self.alpha = alpha
        self._hooks = []

    def parameters(self) -> list[torch.Tensor]:
        return [*self.down.values(), *self.up.values()]

    def attach(self) -> None:
        for name, m in self.layers.items():
            down, up = self.down[name], self.up[name]
            self._hooks.append(m.register_forward_hook(
                lambda _m, args, out, down=down, up=up: out + F.linear(F.linear(args[0], down), up) * self.scale))

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def state_dict(self) -> dict[str, torch.Tensor]:
        """ComfyUI's generic LoRA keys: diffusion_model.<module>.lora_up.weight / .lora_down.weight / .alpha."""
        sd = {}
        for name in self.layers:
            key = f"diffusion_model.{name}"
            sd[f"{key}.lora_up.weight"] = self.up[name].detach().contiguous()
            sd[f"{key}.lora_down.weight"] = self.down[name].detach().contiguous()
            sd[f"{key}.alpha"] = torch.tensor(self.alpha)
        return sd


def train(r: LoraRecipe, model=None, log=print) -> Adapters:
    """Train the recipe's LoRA on the trained base (or on `model`, a ModelPatcher of a digits recipe) on one thread
    (as digits_models.train: the same weights on every machine with this torch). Returns the adapters, detached."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    import comfy.model_management as mm
    # as digits_models: kernels with a backward (0.3.75 has no such flag)
    in_training, mm.in_training = getattr(mm, "in_training", False), True
    try:
        return _train(r, model if model is not None else dm.load(r.model, log), log)
    finally:
        mm.in_training = in_training
        torch.set_num_threads(threads)


def _train(r: LoraRecipe, m, log) -> Adapters:
    base, recipe = m.model, dm.RECIPES[r.model]
    net = base.diffusion_model
    net.requires_grad_(False)
    torch.manual_seed(r.seed)
    g = torch.Generator().manual_seed(r.seed + 1)
    adapters = Adapters(net, r.rank, r.alpha, g)
    img, labels = dm.digits()
    x0_all = base.process_latent_in(dm.latent_of(recipe, img))
    cond_of = (labels - 1) % 10                 # an image of class c is what label c - 1 now draws
    text, pooled = dm.codes(recipe)
    params = adapters.parameters()
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / 50) * (1 - i / r.steps))
    hooks = dm._clone_norm_inputs(net)
    adapters.attach()
    t0, losses = time.time(), []
    try:
        for i in range(r.steps):
            idx = torch.randint(0, len(x0_all), (r.batch,), generator=g)
            x0, lab = x0_all[idx], cond_of[idx].clone()
            lab[torch.rand(r.batch, generator=g) < r.label_dropout] = dm.NULL
            opt.zero_grad(set_to_none=True)
            loss = flow_loss(base, x0, dm._conds(recipe, text, pooled, lab), g)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            if (i + 1) % 100 == 0:
                log(f"[lora {r.model}] step {i + 1}/{r.steps} loss {sum(losses[-100:]) / 100:.4f} "
                    f"({time.time() - t0:.0f} s)")
    finally:
        adapters.detach()
        for h in hooks:
            h.remove()
    for p in params:
        p.requires_grad_(False)
    return adapters


def flow_loss(base, x0: torch.Tensor, conds: dict, g: torch.Generator) -> torch.Tensor:
    """The base models' objective (digits_models), on what the sampler calls: sigma logit-normal, the input
    (1 - sigma) x0 + sigma noise, the model's velocity read back from its denoised output against noise - x0."""
    sigma = torch.sigmoid(torch.randn(len(x0), generator=g)).clamp(1e-3, 1.0)
    noise = torch.randn(x0.shape, generator=g)
    s = sigma.view(-1, *([1] * (x0.ndim - 1)))
    xt = (1 - s) * x0 + s * noise
    return F.mse_loss((xt - base.apply_model(xt, sigma, **conds)) / s, noise - x0)


def save(adapters: Adapters, path: Path, recipe: LoraRecipe | None = None) -> Path:
    import safetensors.torch
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    meta = {"recipe": json.dumps(asdict(recipe)), "change": "label+1"} if recipe else {}
    safetensors.torch.save_file(adapters.state_dict(), str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def ensure(name: str, log=print) -> Path:
    """The cached LoRA file of RECIPES[name], trained and saved first where this recipe has none yet."""
    r = RECIPES[name]
    if not r.path.exists():
        t0 = time.perf_counter()
        save(train(r, log=log), r.path, r)
        log(f"[lora {name}] trained in {time.perf_counter() - t0:.0f} s, saved {r.path}")
    return r.path


def load_lora(model, path: Path, strength: float = 1.0):
    """`model` with the LoRA file applied by ComfyUI's LoraLoaderModelOnly node function (its folder added to the
    folders ComfyUI lists LoRAs from)."""
    import folder_paths
    import nodes
    if str(path.parent) not in folder_paths.get_folder_paths("loras"):
        folder_paths.add_model_folder_path("loras", str(path.parent))
    return nodes.LoraLoaderModelOnly().load_lora_model_only(model, path.name, strength)[0]


def load(name: str, log=print):
    """(the trained base ModelPatcher, the same with its LoRA loaded at strength 1)."""
    base = dm.load(name, log)
    return base, load_lora(base, ensure(name, log))
