"""Small models of real ComfyUI classes (Wan 2.1, Flux) that learned something: rectified-flow models trained
on scikit-learn's handwritten digits, with class-label conditioning, so cfg, samplers and caches act on a
model whose outputs mean something. Random-weight models show what a mechanism costs; these show quality.

The data ships inside the scikit-learn wheel (sklearn/datasets/data/digits.csv.gz: 1797 8x8 images, 10
classes, the UCI optical digits test set), so nothing is downloaded. Training is seeded and runs on the CPU in
a few minutes; the weights are cached under output/bench/trained/ with the config's hash in the name, so a
second run loads them.

ComfyUI's convention for both families: rectified flow, x_sigma = (1 - sigma) x0 + sigma * noise, the model
predicts the velocity noise - x0 and ComfyUI's model_sampling turns sigma into the timestep each class
expects (Wan: sigma * 1000). Training calls BaseModel.apply_model, the call the samplers make, so the model
is trained on exactly what sampling feeds it (after process_latent_in).

Latent <-> image: a digit upsampled to 32x32 in [-1, 1], pixel-unshuffled by 4 into 16 channels x 8x8 (the
latent width of both families: 16 image tokens after 2x2 patches). There is no VAE: "decoding" rearranges
the model-space latent back into the 32x32 image.

    .runtime/comfyui-0.33.0/venv/bin/python scripts/train_digits.py [--family wan|flux] [--grid out.png]
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from harness import comfy_runtime

CACHE = comfy_runtime.REPO / "output" / "bench" / "trained"
NULL = 10            # the label of the unconditional code (cfg's negative)
TEXT_TOKENS = 4


@dataclass(frozen=True)
class Recipe:
    family: str
    width: int = 128
    blocks: int = 6            # Wan: layers; Flux: 2 double + the rest single
    text_dim: int = 64
    steps: int = 1500
    batch: int = 64
    lr: float = 1e-3
    label_dropout: float = 0.1
    seed: int = 0
    grid: int = 1              # digits per side of an image: a grid x grid mosaic of one class (1: one digit)
    frames: int = 1            # Wan only: latent frames, the mosaic drifting sideways from one to the next
    start: str = ""            # a model of RECIPES whose trained weights this one starts from ("": its seed's init)

    def key(self) -> str:
        fields = asdict(self)
        for name, plain in (("grid", 1), ("frames", 1), ("start", "")):   # recipes from before these fields keep
            if fields[name] == plain:                                        # their key (and cached weights)
                del fields[name]
        if self.start:              # retrained start weights make another model
            fields["start"] = f"{self.start}:{RECIPES[self.start].key()}"
        return hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def latent_shape(self) -> tuple[int, ...]:
        side = 8 * self.grid
        return (16, self.frames, side, side) if self.family == "wan" else (16, side, side)

    @property
    def image_tokens(self) -> int:
        return self.frames * (4 * self.grid) ** 2        # 2x2 patches of the latent


# Model names (what the benchmarks call a "family") -> recipe. The 8x8-latent pair is the first bench; the mosaics
# bring the token grid to 16x16 (and a video of 4 latent frames of 8x8 tokens), where token-level and spectral
# methods have something to work on: each image is 16 (video: 4) digits of the class, so a batch of 8 shows the
# model as many digits as a batch of 128 single ones. They start from the 8x8 model of their class and go on at
# the larger latent, as the large DiTs are trained (low resolution first, then higher: Flux, SD3, Wan): the
# weights do not depend on the token count (patch embedding, RoPE), and the digits are learnt once, on the cheap
# latent, so a few hundred steps at 256 tokens form them where 2500 from scratch left them half formed.
RECIPES = {"wan": Recipe("wan", steps=2500, lr=2e-3), "flux": Recipe("flux"),   # Wan learns slower
           "wan16": Recipe("wan", steps=800, lr=5e-4, batch=8, grid=4, start="wan"),
           "flux16": Recipe("flux", steps=800, lr=5e-4, batch=8, grid=4, start="flux"),
           "wan_video": Recipe("wan", steps=800, lr=5e-4, batch=8, grid=2, frames=4, start="wan")}


# --- data ------------------------------------------------------------------------------------------------
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(images (N, 1, 32, 32) in [-1, 1], labels (N,)) from the copy bundled in scikit-learn."""
    from sklearn.datasets import load_digits
    d = load_digits()
    img = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    img = F.interpolate(img, size=(32, 32), mode="bilinear", align_corners=False)
    return img * 2 - 1, torch.tensor(d.target, dtype=torch.long)


def to_latent(img: torch.Tensor) -> torch.Tensor:
    return F.pixel_unshuffle(img, 4)            # (N, 16, 8, 8)


def to_image(z: torch.Tensor) -> torch.Tensor:
    """Latent -> image in [0, 1]; Wan's latents carry a frame axis: its frames side by side."""
    if z.ndim == 5:
        z = torch.cat(z.unbind(2), dim=-1)
    return ((F.pixel_shuffle(z.float(), 4) + 1) / 2).clamp(0, 1)


def mosaics(r: Recipe, img: torch.Tensor, labels: torch.Tensor, lab: torch.Tensor, g: torch.Generator):
    """One training batch of the recipe's images for the labels `lab`: per image grid x grid random digits of its
    class, tiled (N, 1, 32 grid, 32 grid); with frames, (N, 1, frames, H, W), each frame the previous one rolled
    sideways by the image's own shift of -4..4 pixels (the mosaic wraps around)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=10)
    starts = torch.cumsum(counts, 0) - counts
    cells = r.grid * r.grid
    pick = (torch.rand(len(lab), cells, generator=g) * counts[lab, None]).long() + starts[lab, None]
    tiles = img[order[pick]][:, :, 0]                                  # (N, cells, 32, 32)
    side = 32 * r.grid
    out = tiles.view(-1, r.grid, r.grid, 32, 32).permute(0, 1, 3, 2, 4).reshape(-1, 1, side, side)
    if r.frames == 1:
        return out
    shift = torch.randint(-4, 5, (len(lab),), generator=g)
    return torch.stack([torch.stack([o.roll(int(s) * f, dims=-1) for o, s in zip(out, shift)])
                        for f in range(r.frames)], dim=2)


def latent_of(r: Recipe, images: torch.Tensor) -> torch.Tensor:
    """Images (N, 1, [frames,] H, W) -> the recipe's latent (N, 16, [frames,] H/4, W/4)."""
    if images.ndim == 5:
        return torch.stack([to_latent(f) for f in images.unbind(2)], dim=2)
    return _shape(r, to_latent(images))


# --- the models ------------------------------------------------------------------------------------------
def _config(r: Recipe) -> tuple[object, dict]:
    import comfy.supported_models as sm
    if r.family == "wan":
        return sm.WAN21_T2V, dict(image_model="wan2.1", model_type="t2v", patch_size=(1, 2, 2), in_dim=16,
                                  dim=r.width, ffn_dim=r.width * 4, freq_dim=256, text_dim=r.text_dim, out_dim=16,
                                  num_heads=max(1, r.width // 64), num_layers=r.blocks, window_size=(-1, -1),
                                  qk_norm=True, cross_attn_norm=True, eps=1e-6)
    if r.family == "flux":
        cfg = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=r.text_dim,
                   context_in_dim=r.text_dim, hidden_size=r.width, mlp_ratio=4.0, num_heads=max(1, r.width // 64),
                   depth=2, depth_single_blocks=r.blocks - 2, axes_dim=[16, 24, 24], theta=10000, patch_size=2,
                   qkv_bias=True, guidance_embed=False)
        return sm.Flux, comfy_runtime.with_fields_since("comfy.ldm.flux.model:FluxParams", cfg, txt_ids_dims=[])
    raise ValueError(f"unknown family {r.family!r}")


def _init(dm: torch.nn.Module, family: str, g: torch.Generator) -> None:
    """Standard initialisation (ComfyUI's ops skip it): Linear/Conv as torch does, norms to one, adaLN
    modulations and the output head to zero so every block starts as the identity (DiT's adaLN-Zero)."""
    with torch.no_grad():
        for name, p in dm.named_parameters():
            if p.ndim >= 2:
                fan_in = p[0].numel()
                p.uniform_(-1, 1, generator=g).mul_((3 / fan_in) ** 0.5)
            elif name.endswith(("scale", "weight")) and "norm" in name.lower():
                p.fill_(1.0)
            else:
                p.zero_()
        for name, p in dm.named_parameters():
            zero_out = (name.startswith(("head.head", "final_layer.linear")) or
                        (family == "flux" and ("_mod.lin" in name or "modulation.lin" in name)))
            if zero_out:
                p.zero_()
            if family == "wan" and name.endswith("modulation"):
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)


def codes(r: Recipe) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed, seeded class codes standing in for text embeddings: (11, TEXT_TOKENS, text_dim) and a pooled
    (11, text_dim) one (Flux's y); index NULL is the unconditional code."""
    g = torch.Generator().manual_seed(1000 + r.seed)
    return torch.randn(11, TEXT_TOKENS, r.text_dim, generator=g), torch.randn(11, r.text_dim, generator=g)


def build(r: Recipe):
    """A ModelPatcher of the recipe's class (fp32, CPU), weights not yet trained."""
    import comfy.model_management
    import comfy.model_patcher
    family_cls, cfg = _config(r)
    mc = family_cls(cfg)
    mc.set_inference_dtype(torch.float32, None)
    model = mc.get_model({})
    _init(model.diffusion_model, r.family, torch.Generator().manual_seed(r.seed))
    return comfy.model_patcher.ModelPatcher(model, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def _conds(r: Recipe, text: torch.Tensor, pooled: torch.Tensor, labels: torch.Tensor) -> dict:
    kw = {"c_crossattn": text[labels]}
    if r.family == "flux":
        kw["y"] = pooled[labels]
    return kw


def _shape(r: Recipe, z: torch.Tensor) -> torch.Tensor:
    return z[:, :, None] if r.family == "wan" else z


def _clone_norm_inputs(dm: torch.nn.Module) -> list:
    """ComfyUI's blocks update the hidden state in place after normalising it (Flux: `img += ...`), which
    autograd refuses (the norm saved that tensor for its backward). Training only: each norm gets a copy."""
    def pre(_mod, args):
        return tuple(a.clone() if isinstance(a, torch.Tensor) else a for a in args)
    return [mod.register_forward_pre_hook(pre) for mod in dm.modules() if "norm" in type(mod).__name__.lower()]


def train(r: Recipe, log=print):
    """Train the recipe from its seed on one thread; returns the ModelPatcher. The order of a float sum
    depends on the thread count, so one thread makes the weights the same on every machine with this torch
    (make bench trains the two families side by side, a thread each, anyway)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(r, log)
    finally:
        torch.set_num_threads(threads)


def _train(r: Recipe, log=print):
    import comfy.model_management as mm
    m = build(r)
    # as ComfyUI's own training node: in_training steps its kernels that have no backward aside (comfy-kitchen's
    # fused rope, after 0.3.75), and the model, built for inference with its gradients off there, gets them on
    in_training, mm.in_training = mm.in_training, True
    try:
        return _train_steps(r, m, log)
    finally:
        mm.in_training = in_training


def _train_steps(r: Recipe, m, log):
    base = m.model
    if r.start:
        base.diffusion_model.load_state_dict(load(r.start, log).model.diffusion_model.state_dict())
    base.diffusion_model.requires_grad_(True)
    hooks = _clone_norm_inputs(base.diffusion_model)
    torch.manual_seed(r.seed)
    g = torch.Generator().manual_seed(r.seed + 1)
    img, labels = digits()
    x0_all = base.process_latent_in(_shape(r, to_latent(img))) if r.grid == 1 else None
    text, pooled = codes(r)
    params = [p for p in base.diffusion_model.parameters()]
    opt = torch.optim.AdamW(params, lr=r.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / 100) * 0.5 * (1 + torch.cos(torch.tensor(i / r.steps * torch.pi)).item()))
    base.diffusion_model.train()
    t0, avg = time.time(), None
    for i in range(r.steps):
        if x0_all is not None:
            idx = torch.randint(0, len(x0_all), (r.batch,), generator=g)
            x0, lab = x0_all[idx], labels[idx].clone()
        else:
            lab = torch.randint(0, 10, (r.batch,), generator=g)
            x0 = base.process_latent_in(latent_of(r, mosaics(r, img, labels, lab, g)))
        lab[torch.rand(r.batch, generator=g) < r.label_dropout] = NULL
        sigma = torch.sigmoid(torch.randn(r.batch, generator=g)).clamp(1e-3, 1.0)   # logit-normal, as SD3/Flux
        noise = torch.randn(x0.shape, generator=g)
        s = sigma.view(-1, *([1] * (x0.ndim - 1)))
        xt = (1 - s) * x0 + s * noise
        denoised = base.apply_model(xt, sigma, **_conds(r, text, pooled, lab))
        v = (xt - denoised) / s                                             # the model's own output
        loss = F.mse_loss(v, noise - x0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if (i + 1) % 250 == 0:
            log(f"[train {r.family}] step {i + 1}/{r.steps} loss {avg:.4f} ({time.time() - t0:.0f} s)")
    base.diffusion_model.eval()
    for h in hooks:
        h.remove()
    for p in params:
        p.requires_grad_(False)
    return m


def weights_path(family: str) -> Path:
    """Where the family's trained weights are cached (the recipe's key in the name: a changed recipe retrains)."""
    return CACHE / f"digits_{family}_{RECIPES[family].key()}.safetensors"


def trained(family: str) -> bool:
    return weights_path(family).exists()


def load(family: str, log=print):
    """The trained ModelPatcher for a family: from the cache if this recipe was trained before, else trained
    now and cached (safetensors)."""
    import safetensors.torch
    r = RECIPES[family]
    path = weights_path(family)
    if path.exists():
        m = build(r)
        m.model.diffusion_model.load_state_dict(safetensors.torch.load_file(str(path)))
        for p in m.model.diffusion_model.parameters():
            p.requires_grad_(False)
        return m
    m = train(r, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.partial")      # two processes may train the same start model
    safetensors.torch.save_file({k: v.contiguous() for k, v in m.model.diffusion_model.state_dict().items()},
                                str(tmp), metadata={"recipe": json.dumps(asdict(r))})
    tmp.replace(path)
    log(f"[train {family}] saved {path}")
    return m


# --- sampling through ComfyUI ----------------------------------------------------------------------------
def conditioning(family: str, label: int):
    """(positive, negative) in ComfyUI's conditioning format for a class label."""
    r = RECIPES[family]
    text, pooled = codes(r)

    def c(i):
        return [[text[i][None], {"pooled_output": pooled[i][None]}]]
    return c(label), c(NULL)


def empty_latent(name: str, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, *RECIPES[name].latent_shape)


def sample(model, family: str, label: int, seed: int, *, steps=30, cfg=4.0, sampler="euler",
           scheduler="simple") -> torch.Tensor:
    """One sample through comfy.sample.sample; returns the image (1, 1, 32, 32) in [0, 1]."""
    import comfy.sample
    pos, neg = conditioning(family, label)
    lat = empty_latent(family)
    noise = comfy.sample.prepare_noise(lat, seed)
    out = comfy.sample.sample(model, noise, steps, cfg, sampler, scheduler, pos, neg, lat, denoise=1.0, seed=seed,
                              disable_pbar=True)
    return to_image(out)            # the sampler hands back the latent as the user sees it (process_latent_out)


def grid(model, family: str, path: Path, **kw) -> Path:
    """A 10 x 4 grid (one row per label, four seeds) as PNG."""
    from PIL import Image
    rows = [torch.cat([sample(model, family, label, seed, **kw)[0, 0] for seed in range(4)], dim=1)
            for label in range(10)]
    arr = (torch.cat(rows, dim=0) * 255).round().byte().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode="L").resize((arr.shape[1] * 2, arr.shape[0] * 2), Image.NEAREST).save(path)
    return path
