"""How a block's call is seen by the engine: the hidden-state tensors under the engine's keys ("img", "txt") and
back. A family row (families.py) names the adapter its blocks need; the block routes (patches.py) use it."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class ReplaceAdapter:
    """A patches_replace entry whose forward passes the hidden state under its own name and takes it back bare
    (Hunyuan3D 2.1: {"x", "t", "cond", "skip"} in, the new x out): seen as the engine's {"img": ...} dict."""
    hidden: str = "x"

    def to_engine(self, args: dict) -> dict:
        return args | {"img": args[self.hidden]}

    def call(self, original: Callable, d: dict) -> dict:
        return {"img": original({k: v for k, v in d.items() if k != "img"} | {self.hidden: d["img"]})}

    def result(self, out: dict):
        return out["img"]


@dataclass(frozen=True)
class TupleAdapter:
    """A patches_replace entry that passes several hidden states as one tuple under one key and takes the tuple
    back (LTX-2: "img" = (video, audio)): seen as the engine's dict, one key a modality ("img", "audio")."""
    key: str = "img"
    streams: tuple[str, ...] = ("img", "audio")

    def to_engine(self, args: dict) -> dict:
        return args | dict(zip(self.streams, args[self.key]))

    def call(self, original: Callable, d: dict) -> dict:
        rest = {k: v for k, v in d.items() if k not in self.streams}
        return dict(zip(self.streams, original(rest | {self.key: tuple(d[s] for s in self.streams)})[self.key]))

    def result(self, out: dict) -> dict:
        return {self.key: tuple(out[s] for s in self.streams)}


@dataclass(frozen=True)
class CallAdapter:
    """A block's own call, seen as the engine's dict: its arguments by parameter name, the hidden-state
    tensors also under the engine's keys, and its return value as {engine key: tensor}.
    hidden: engine key -> the forward's parameter holding it; returns: engine keys of what it returns
    (one key: a tensor; more: a tuple in that order)."""
    hidden: dict[str, str] = field(default_factory=lambda: {"img": "x"})
    returns: tuple[str, ...] = ("img",)

    def to_engine(self, signature: inspect.Signature, args, kwargs) -> dict:
        bound = dict(signature.bind(*args, **kwargs).arguments)
        return bound | {key: bound[param] for key, param in self.hidden.items()}

    def call(self, forward: Callable, d: dict) -> dict:
        params = {k: v for k, v in d.items() if k not in self.hidden}
        params |= {param: d[key] for key, param in self.hidden.items()}
        out = forward(**params)
        return dict(zip(self.returns, out if len(self.returns) > 1 else (out,)))

    def result(self, out: dict):
        return out[self.returns[0]] if len(self.returns) == 1 else tuple(out[k] for k in self.returns)
