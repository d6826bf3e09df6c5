"""The tiny models of tiny_models.py loaded the ways users load quantized weights:
- checkpoints stored quantized (fp8 scaled per layer; int8 per layer on the current line), read by the same loader;
- GGUF files (Q8_0, and Q4_K, a K-quant) read by ComfyUI-GGUF's own Unet Loader (GGUF): its GGML ops dequantize each
  weight at every call and its ModelPatcher subclass clones differently from ComfyUI's;
- fp8 weights (e4m3fn, e5m2) through ComfyUI's diffusion-model loader, as the core Load Diffusion Model node's
  `weight_dtype` asks for them (weights stored in fp8, cast to the compute dtype at every call).

Each loader goes through comfy.sd.load_diffusion_model_state_dict as the nodes do. ComfyUI's detector cannot recognise
these tiny configs (it derives widths and heads from the real checkpoints' sizes), so `given_config` answers it with
the family config the tiny model was built from; everything after detection is the real loader."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
import tempfile
from pathlib import Path

import numpy as np

from harness.comfy_runtime import REPO

GGUF_PACK = REPO / ".runtime" / "packs" / "ComfyUI-GGUF"      # scripts/setup_runtime.sh unpacks it
GGUF_TYPES = ("Q8_0", "Q4_K")
FP8_TYPES = ("fp8_e4m3fn", "fp8_e5m2")
# checkpoints stored quantized: fp8 with a scale per layer (the "scaled_fp8" files ComfyUI publishes; both lines),
# and int8 with a scale per layer in the current line's per-layer format (comfy_quant, int8_tensorwise)
STORED_TYPES = ("fp8_scaled", "int8")
# the file's general.architecture: ComfyUI-GGUF refuses names outside its list (the model itself is detected)
_ARCH = {"Flux": "flux", "WAN21_T2V": "wan", "QwenImage": "qwen_image", "ZImage": "lumina2", "Lumina2": "lumina2",
         "HunyuanVideo": "hyvid"}


def gguf_pack():
    """ComfyUI-GGUF imported the way ComfyUI imports a custom node pack: a package named for its folder."""
    name = GGUF_PACK.name
    if name not in sys.modules:
        if not (GGUF_PACK / "nodes.py").is_file():
            raise RuntimeError(f"ComfyUI-GGUF not found at {GGUF_PACK}: run scripts/setup_runtime.sh (make setup)")
        spec = importlib.util.spec_from_file_location(name, GGUF_PACK / "__init__.py",
                                                      submodule_search_locations=[str(GGUF_PACK)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def q4_k(values: np.ndarray) -> np.ndarray:
    """GGML's Q4_K encoding (gguf-py reads it but cannot write it) of float values, a multiple of 256 of them: per
    super-block of 256, an fp16 scale d and min dmin, then 8 sub-blocks of 32 values, each with a 6-bit scale index
    and min index packed into 12 bytes, and 4-bit values x = d*sc*q - dmin*m. Returns the bytes, 144 per 256."""
    x = values.astype(np.float32).reshape(-1, 8, 32)
    low = np.minimum(x.min(-1), 0.0)                    # GGML stores a min to subtract: never above zero
    scale = (x.max(-1) - low) / 15
    d = (scale.max(-1, keepdims=True) / 63).astype(np.float16)
    dmin = (-low.min(-1, keepdims=True) / 63).astype(np.float16)
    sc = np.clip(np.round(scale / _nonzero(d)), 0, 63).astype(np.uint8)
    mn = np.clip(np.round(-low / _nonzero(dmin)), 0, 63).astype(np.uint8)
    step = (d.astype(np.float32) * sc)[..., None]
    offset = (dmin.astype(np.float32) * mn)[..., None]
    q = np.clip(np.round((x + offset) / _nonzero(step)), 0, 15).astype(np.uint8)
    scales = np.concatenate([sc[:, :4] | (sc[:, 4:] >> 4) << 6,          # sub-blocks 0-3, top bits of 4-7's scale
                             mn[:, :4] | (mn[:, 4:] >> 4) << 6,          # the same for the mins
                             (sc[:, 4:] & 15) | (mn[:, 4:] & 15) << 4], 1)  # low bits of 4-7's scale and min
    nibbles = (q[:, 0::2] | q[:, 1::2] << 4).reshape(len(x), 128)      # sub-block 2k low nibble, 2k+1 high
    return np.concatenate([d.view(np.uint8), dmin.view(np.uint8), scales, nibbles], 1)


def _nonzero(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float32)
    return np.where(a > 0, a, 1.0)


def write_gguf(state_dict: dict, path: Path, arch: str, qtype: str) -> dict:
    """A GGUF file of a diffusion model's weights, quantized as ComfyUI-GGUF's converter does: 1-D tensors and those of
    1024 values or fewer stay F32, tensors of more than 4 dimensions (Conv3d) are stored flat in F32, and the rest are
    quantized (flattened where a row is not a whole number of blocks, the original shape kept in the pack's metadata
    key). Returns {GGML type name: tensor count}."""
    import gguf
    target = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[target][0]
    writer = gguf.GGUFWriter(str(path), arch)
    counts: dict = {}
    for key, tensor in state_dict.items():
        data = tensor.detach().float().cpu().numpy()
        kind = target if data.ndim > 1 and data.size > 1024 and data.ndim <= 4 and data.size % block == 0 \
            else gguf.GGMLQuantizationType.F32
        if data.ndim > 4 or (kind == target and data.shape[-1] % block):
            writer.add_array(f"comfy.gguf.orig_shape.{key}", [int(s) for s in data.shape])
            data = data.reshape(1, -1) if kind == gguf.GGMLQuantizationType.F32 else data.reshape(-1, block)
        if kind == gguf.GGMLQuantizationType.Q4_K:
            writer.add_tensor(key, q4_k(data).reshape(len(data), -1), raw_dtype=kind)
        elif kind != gguf.GGMLQuantizationType.F32:
            writer.add_tensor(key, gguf.quants.quantize(data, kind), raw_dtype=kind)
        else:
            writer.add_tensor(key, data)
        counts[kind.name] = counts.get(kind.name, 0) + 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return counts


@contextlib.contextmanager
def given_config(model_config):
    """ComfyUI's detector answered with the family config a tiny model was built from (see the module docstring):
    only the two steps that read widths and heads off the checkpoint are answered; the rest of its detection (an
    fp8-scaled checkpoint's marker, per-layer quantization) runs as it is."""
    import comfy.model_detection as detection
    real = detection.detect_unet_config, detection.model_config_from_unet_config
    detection.detect_unet_config = lambda *a, **k: dict(model_config.unet_config)
    detection.model_config_from_unet_config = lambda *a, **k: type(model_config)(dict(model_config.unet_config))
    try:
        yield
    finally:
        detection.detect_unet_config, detection.model_config_from_unet_config = real


def _models_folder() -> Path:
    """A folder of diffusion models both loaders list (their file lists are ComfyUI's folder_paths)."""
    import folder_paths
    folder = Path(folder_paths.get_output_directory()).parent / "cachekit-quantized-models"
    folder.mkdir(parents=True, exist_ok=True)
    if str(folder) not in folder_paths.get_folder_paths("diffusion_models"):
        folder_paths.add_model_folder_path("diffusion_models", str(folder))
    return folder


def load_gguf(model, qtype: str):
    """`model` (a tiny ModelPatcher) written to a GGUF file and loaded back by ComfyUI-GGUF's Unet Loader (GGUF) node
    function. Returns (the loader's MODEL, {GGML type: count})."""
    config = model.model.model_config
    pack = gguf_pack()
    folder = _models_folder()
    path = Path(tempfile.mkstemp(suffix=f"-{qtype}.gguf", dir=folder)[1])
    counts = write_gguf(model.model.diffusion_model.state_dict(), path, _ARCH[type(config).__name__], qtype)
    with given_config(config):
        loaded = pack.nodes.UnetLoaderGGUF().load_unet(path.name)[0]
    return loaded, counts


def load_fp8(model, weight_dtype: str):
    """`model` saved as safetensors and loaded back by ComfyUI's Load Diffusion Model node function with its
    `weight_dtype` (fp8_e4m3fn, fp8_e5m2): the weights are stored in fp8 and cast up at every call."""
    return _load_unet(model, lambda sd: sd, weight_dtype, ".safetensors")


def _load_unet(model, stored, weight_dtype: str, suffix: str):
    """`model`'s weights, as `stored` writes them, saved as safetensors and loaded by Load Diffusion Model."""
    import comfy.utils
    import nodes
    path = Path(tempfile.mkstemp(suffix=suffix, dir=_models_folder())[1])
    sd = {k: v.contiguous() for k, v in model.model.diffusion_model.state_dict().items()}
    comfy.utils.save_torch_file(stored(sd), str(path))
    with given_config(model.model.model_config):
        return nodes.UNETLoader().load_unet(path.name, weight_dtype)[0]


def _block_matrix(key: str, tensor) -> bool:
    """A block Linear's weight: what the quantized checkpoints store quantized (embedders and heads stay float)."""
    return key.endswith(".weight") and tensor.ndim == 2 and any(f"{c}." in key for c in ("blocks", "layers"))


def stored_quantized(state_dict: dict, kind: str) -> dict:
    """A diffusion model's weights as a quantized checkpoint stores them: each block matrix in fp8 e4m3fn or int8
    with one float32 scale (its largest magnitude over the type's largest value). fp8_scaled: the `scaled_fp8`
    marker (two elements: matrix products in the compute dtype) and `.scale_weight` per layer, which both lines
    read; int8: the current line's per-layer `comfy_quant` description and `.weight_scale`."""
    import json
    import torch
    out = {}
    for key, w in state_dict.items():
        if not _block_matrix(key, w):
            out[key] = w
            continue
        layer = key[:-len(".weight")]
        w = w.float()
        if kind == "fp8_scaled":
            scale = w.abs().max() / torch.finfo(torch.float8_e4m3fn).max
            out[key] = (w / scale).to(torch.float8_e4m3fn)
            out[f"{layer}.scale_weight"] = scale.reshape(())
        elif kind == "int8":
            scale = w.abs().max() / 127
            out[key] = torch.round(w / scale).clamp(-127, 127).to(torch.int8)
            out[f"{layer}.weight_scale"] = scale.reshape(())
            out[f"{layer}.comfy_quant"] = torch.tensor(list(json.dumps({"format": "int8_tensorwise"}).encode()),
                                                       dtype=torch.uint8)
        else:
            raise ValueError(f"unknown stored type {kind!r}: {STORED_TYPES}")
    if kind == "fp8_scaled":
        out["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    return out


def load_stored(model, kind: str):
    """`model` saved as a quantized checkpoint (stored_quantized) and loaded back by ComfyUI's Load Diffusion Model
    node function, weight_dtype default: the loader reads the quantization from the file."""
    return _load_unet(model, lambda sd: stored_quantized(sd, kind), "default", f"-{kind}.safetensors")
