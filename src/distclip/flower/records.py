"""distclip's node memory and messages as Flower records (``RecordDict`` of ``ArrayRecord``/``ConfigRecord``).

Tensors travel in ``ArrayRecord`` s (float64 stays float64); everything else is a few integers and strings
in a ``ConfigRecord``. A message carries exactly the tensors distclip's counters count: one client row per
exchange (``numel`` floats, or the k values and k int64 indices of a Top-k message) up, the average down.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, RecordDict
from torch import Tensor

from .node import Reply, Saved, sparse_message

SAVED = "distclip"  # the key of the node's memory in its context state


def _arrays(tensors: dict[str, Tensor]) -> ArrayRecord:
    return ArrayRecord(torch_state_dict={k: v.detach().cpu().contiguous() for k, v in tensors.items()})


def _tensors(record: ArrayRecord, device: torch.device | str = "cpu") -> dict[str, Tensor]:
    return {k: v.to(device) for k, v in record.to_torch_state_dict().items()}


def save(state: RecordDict, saved: Saved) -> None:
    """Write ``saved`` into a node's context state."""
    tensors = {f"state.{k}": v for k, v in saved.state.items() if v is not None}
    tensors.update({f"log.{i}": t for i, t in enumerate(saved.log)})
    state[f"{SAVED}.arrays"] = _arrays(tensors)
    state[f"{SAVED}.config"] = ConfigRecord({
        "pos": saved.pos, "evaluating": saved.evaluating, "log": len(saved.log),
        "none": [k for k, v in saved.state.items() if v is None], "fields": list(saved.state),
        "count_now": saved.count_now, "count_sum": saved.count_sum, "steps_since_log": saved.steps_since_log,
        "last_clip": saved.last_clip, **{f"counter.{k}": v for k, v in saved.counter.items()},
    })


def load(state: RecordDict, device: torch.device | str = "cpu") -> Saved:
    """The node's memory from its context state (a fresh :class:`Saved` before the first step)."""
    if f"{SAVED}.config" not in state:
        return Saved()
    c = state.config_records[f"{SAVED}.config"]
    t = _tensors(state.array_records[f"{SAVED}.arrays"], device)
    return Saved(
        pos=int(c["pos"]), evaluating=bool(c["evaluating"]),
        state={k: None if k in c["none"] else t[f"state.{k}"] for k in c["fields"]},
        log=[t[f"log.{i}"] for i in range(int(c["log"]))],
        counter={k.removeprefix("counter."): int(v) for k, v in c.items() if k.startswith("counter.")},
        count_now=int(c["count_now"]), count_sum=int(c["count_sum"]), steps_since_log=int(c["steps_since_log"]),
        last_clip=int(c["last_clip"]),
    )


def reply_content(r: Reply) -> RecordDict:
    """A node's answer: its row (dense, or Top-k values and indices) and what the server checks and counts."""
    if r.sparse_k is None:
        arrays = {"row": r.payload}
    else:
        values, indices = sparse_message(r.payload, r.sparse_k)
        arrays = {"values": values, "indices": indices}
    meta = {"kind": r.kind, "step": r.step, "stage_pos": r.stage_pos, "down": r.down,
            "sparse_k": -1 if r.sparse_k is None else r.sparse_k, "shape": list(r.payload.shape),
            "dtype": str(r.payload.dtype).removeprefix("torch."), **r.tallies}
    return RecordDict({"arrays": _arrays(arrays), "meta": ConfigRecord(meta)})


def row(content: RecordDict) -> Tensor:
    """The dense row a node sent (a Top-k message scattered back into zeros)."""
    meta, t = content.config_records["meta"], _tensors(content.array_records["arrays"])
    if "row" in t:
        return t["row"]
    shape = [int(s) for s in meta["shape"]]
    dense = torch.zeros(int(torch.Size(shape).numel()), dtype=getattr(torch, str(meta["dtype"])))
    return dense.index_add_(0, t["indices"], t["values"]).view(shape)


def request(until: int, result: Tensor | None) -> RecordDict:
    """The server's message: advance to the model at step ``until``; ``result`` answers the pending exchange."""
    content = RecordDict({"meta": ConfigRecord({"until": until})})
    if result is not None:
        content["arrays"] = _arrays({"result": result})
    return content


def request_parts(content: RecordDict, device: torch.device | str = "cpu") -> tuple[int, Tensor | None]:
    until = int(content.config_records["meta"]["until"])
    arrays = content.array_records.get("arrays")
    return until, None if arrays is None else _tensors(arrays, device)["result"]
