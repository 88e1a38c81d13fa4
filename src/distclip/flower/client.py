"""The ClientApp: a Flower node runs one distclip client (its ``partition-id``) with the same rule modules.

Two message types: ``query`` (the server's hello: it brings the distclip config, the node answers which
client it is) and ``train`` (advance to the model at a step; see :func:`distclip.flower.node.advance`).
The node's memory between messages is kept in its Flower context state (:mod:`distclip.flower.records`).
A distclip error on the node (bad input, divergence) answers as ``kind = "error"`` with its one line.
"""

from __future__ import annotations

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from ..errors import DistclipError
from . import node, records

RUN = "distclip.run"  # context state: the config and this node's client


def _error(msg: Message, text: str) -> Message:
    return Message(RecordDict({"meta": ConfigRecord({"kind": "error", "error": text})}), reply_to=msg)


def _client_id(context: Context) -> int:
    cid = context.node_config.get("partition-id")
    if cid is None:
        raise DistclipError("this SuperNode has no partition-id: start it with --node-config 'partition-id=I' "
                            "(I = 0 .. clients - 1, one node per client)")
    return int(cid)


def hello(msg: Message, context: Context) -> Message:
    """Keep the run's config; answer with this node's client id."""
    try:
        cid = _client_id(context)
        toml = str(msg.content.config_records["meta"]["config"])
        node.build(toml, cid)  # fail now, on the first message, if the config does not fit this node
    except DistclipError as e:
        return _error(msg, str(e))
    context.state[RUN] = ConfigRecord({"config": toml, "client": cid})
    return Message(RecordDict({"meta": ConfigRecord({"kind": "hello", "client": cid})}), reply_to=msg)


def train(msg: Message, context: Context) -> Message:
    """Advance this client's rule to the requested step (or to the exchange it stops at)."""
    if RUN not in context.state:
        return _error(msg, "this node got a step before the server's hello; restart the run")
    run = context.state.config_records[RUN]
    toml, cid = str(run["config"]), int(run["client"])
    try:
        device = node.build(toml, cid).ctx.x0.device
        saved = records.load(context.state, device)
        until, result = records.request_parts(msg.content, device)
        reply = node.advance(toml, cid, saved, until, result)
    except DistclipError as e:
        return _error(msg, str(e))
    records.save(context.state, saved)
    return Message(records.reply_content(reply), reply_to=msg)


def client_app() -> ClientApp:
    """A ClientApp running distclip's client rules (the config comes from the server)."""
    app = ClientApp()
    app.query()(hello)
    app.train()(train)
    return app
