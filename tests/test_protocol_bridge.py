"""``BridgeCore`` alone, without I/O: fed the gateway's answers, checked for
the requests, deliveries, timers and losses it asks its driver for."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest

from wingman_gateway.protocol.bridge import CONFIRM_DELAY, PING, POLL_TIMEOUT, READER_RETRIES, UNREGISTER
from wingman_gateway.protocol.bridge_actions import (
    CONFIRM, CONFIRMING, FAREWELL, POLL, PROBE, READ, SEND, SILENT, STREAM,
    Action, Cancel, Deliver, Later, Lost, Opened, OpenFailed, Read, Request, Stop,
)
from wingman_gateway.protocol.bridge_core import BridgeCore
from wingman_gateway.protocol.errors import CONNECTION_FAILED, NOT_CONNECTED, TLS_ERROR, ClientError

URL = "http://127.0.0.1:9/"
BASE = "http://127.0.0.1:9/bridge"
SECRET = "s3cret"
REGISTER = '{"type":"register","messageId":"r1","payload":{"name":"a"}}'
REGISTERED = {"type": "ack", "messageId": "r1", "session": SECRET, "payload": {"nodeId": "n1"}}


class Lines:
    """The core's log calls, as formatted lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def _add(self, format: Any = None, **fields: Any) -> None:
        self.lines.append(str(format).format(**fields))

    debug = info = warn = error = _add

    def failure(self, format: Any, failure: Any = None, **fields: Any) -> None:
        self._add(format, **fields)


def core(stream: bool = True) -> BridgeCore:
    return BridgeCore(URL, log=Lines(), timeout=10.0, stream=stream)


def only(actions: Iterator[Action], kind: type) -> Any:
    """The one action of ``kind`` among ``actions`` (all of them taken)."""
    found = [action for action in list(actions) if isinstance(action, kind)]
    assert len(found) == 1, found
    return found[0]


def opened(stream: bool = True) -> BridgeCore:
    bridge = core(stream)
    probe = only(bridge.open(), Request)
    assert list(bridge.answered(probe, 200, b'{"type":"pong"}')) == [Opened()]
    return bridge


def registered(stream: bool = True) -> tuple[BridgeCore, Request]:
    """An open core whose register was answered; and its reader's request."""
    bridge = opened(stream)
    post = only(bridge.send(REGISTER), Request)
    actions = list(bridge.answered(post, 200, json.dumps(REGISTERED).encode()))
    reader = actions[0]
    assert isinstance(reader, Request) and actions[1:] == [Deliver(json.dumps(REGISTERED))]
    return bridge, reader


def streaming() -> tuple[BridgeCore, Request]:
    """A registered core reading an event stream that has answered."""
    bridge, stream = registered()
    assert list(bridge.answered(stream, 200, b"", "text/event-stream")) == [Later(SILENT, 10.0), Read(stream)]
    return bridge, stream


# -- opening ------------------------------------------------------------------


def test_the_probe_is_a_ping_without_a_session() -> None:
    bridge = core()
    probe = only(bridge.open(), Request)
    assert (probe.kind, probe.method, probe.url, probe.body) == (PROBE, "POST", f"{BASE}/send", PING)
    assert "x-wingman-session" not in probe.headers
    assert probe.headers["content-type"] == "application/json"


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, b"not found", f"no HTTP bridge at {URL} (HTTP 404)"),
        (200, b"<html>", f"not a Wingman Gateway bridge at {URL} (HTTP 200)"),
    ],
)
def test_a_probe_answered_by_something_else_fails_the_open(status: int, body: bytes, message: str) -> None:
    bridge = core()
    probe = only(bridge.open(), Request)
    failed = only(bridge.answered(probe, status, body), OpenFailed)
    assert (failed.error.code, failed.error.message) == (CONNECTION_FAILED, message)
    assert bridge.finished and not bridge.is_open


@pytest.mark.parametrize(
    ("tls", "code", "message"),
    [(False, CONNECTION_FAILED, f"cannot reach {URL}: refused"), (True, TLS_ERROR, f"{URL}: refused")],
)
def test_a_failed_probe_says_whether_it_was_tls(tls: bool, code: str, message: str) -> None:
    bridge = core()
    probe = only(bridge.open(), Request)
    failed = only(bridge.failed(probe, "refused", tls=tls), OpenFailed)
    assert (failed.error.code, failed.error.message) == (code, message)


def test_an_abandoned_open_ignores_the_late_answer() -> None:
    bridge = core()
    probe = only(bridge.open(), Request)
    bridge.abandon()
    assert list(bridge.answered(probe, 200, b'{"type":"pong"}')) == []
    assert list(bridge.failed(probe, "cancelled")) == []


def test_nothing_is_sent_before_the_connection_opens() -> None:
    with pytest.raises(ClientError) as caught:
        core().send(REGISTER)
    assert (caught.value.code, caught.value.message) == (NOT_CONNECTED, "the connection is not open")


# -- sending and routing replies ------------------------------------------------------


def test_texts_are_posted_one_at_a_time_in_order() -> None:
    bridge = opened()
    first = only(bridge.send("one"), Request)
    assert list(bridge.send("two")) == []  # waits for the first's answer
    second = only(bridge.answered(first, 204, b""), Request)
    assert (first.kind, first.body, second.kind, second.body) == (SEND, b"one", SEND, b"two")
    assert list(bridge.answered(second, 204, b"")) == []


def test_the_registers_reply_carries_the_secret_and_starts_the_reader() -> None:
    bridge, reader = registered()
    assert bridge.secret == SECRET
    assert (reader.kind, reader.method, reader.url) == (STREAM, "GET", f"{BASE}/sse?after=0")
    assert reader.headers["x-wingman-session"] == SECRET
    assert reader.headers["accept"] == "text/event-stream"
    later = only(bridge.send("next"), Request)
    assert later.headers["x-wingman-session"] == SECRET


def test_a_reply_goes_to_the_node_before_the_next_post() -> None:
    bridge = opened()
    first = only(bridge.send("one"), Request)
    bridge.send("two")
    reply = {"type": "error", "messageId": "m1", "payload": {"code": "INVALID_MESSAGE"}}
    actions = list(bridge.answered(first, 400, json.dumps(reply).encode()))
    assert actions[0] == Deliver(json.dumps(reply))
    assert isinstance(actions[1], Request) and actions[1].body == b"two"


def test_a_reply_that_is_not_json_loses_the_connection() -> None:
    bridge = opened()
    post = only(bridge.send("one"), Request)
    lost = only(bridge.answered(post, 502, b"<html>bad gateway"), Lost)
    assert lost == Lost(None, f"{URL} answered HTTP 502, not a bridge reply", True, None)


def test_a_failed_post_loses_the_connection_and_the_outbox() -> None:
    bridge = opened()
    post = only(bridge.send("one"), Request)
    bridge.send("two")
    assert list(bridge.failed(post, "connection refused")) == [
        Lost(None, f"sending to {URL} failed: connection refused", True, None)
    ]
    with pytest.raises(ClientError):
        bridge.send("three")


def test_an_ended_session_in_a_reply_is_delivered_then_lost() -> None:
    bridge, _ = registered()
    post = only(bridge.send("one"), Request)
    refusal = {"type": "error", "payload": {"code": "NOT_REGISTERED", "message": "session expired"}}
    actions = list(bridge.answered(post, 401, json.dumps(refusal).encode()))
    assert actions == [Deliver(json.dumps(refusal)),
                       Lost(None, "the bridge session ended: session expired", True, None)]
    assert list(bridge.close(1000, "")) == []  # no farewell for an ended session


# -- the event stream ----------------------------------------------------------------


def test_streamed_messages_are_delivered_once_and_confirmed_in_a_batch() -> None:
    bridge, stream = streaming()
    events = b"id: 1\ndata: {\"n\":1}\n\n: keepalive\n\nid: 2\ndata: {\"n\":2}\n\nid: 1\ndata: {\"n\":1}\n\n"
    actions = list(bridge.received(stream, events))
    assert actions == [Cancel(SILENT), Deliver('{"n":1}'), Later(CONFIRMING, CONFIRM_DELAY), Deliver('{"n":2}')]
    confirm = only(bridge.fire(CONFIRMING), Request)
    assert (confirm.kind, confirm.method, confirm.url) == (CONFIRM, "POST", f"{BASE}/ack?after=2")
    assert list(bridge.received(stream, b"id: 3\ndata: {}\n\n")) == [Deliver("{}")]  # one confirmation at a time
    assert list(bridge.answered(confirm, 204, b"")) == [Later(CONFIRMING, CONFIRM_DELAY)]
    assert only(bridge.fire(CONFIRMING), Request).url == f"{BASE}/ack?after=3"


def test_an_older_sequence_number_is_dropped() -> None:
    bridge, stream = streaming()
    actions = list(bridge.received(stream, b"id: 5\ndata: five\n\nid: 4\ndata: four\n\nid: 6\ndata: six\n\n"))
    assert [a.text for a in actions if isinstance(a, Deliver)] == ["five", "six"]
    assert bridge.cursor.after == 6


def test_a_broken_stream_resumes_after_the_last_message() -> None:
    bridge, stream = streaming()
    list(bridge.received(stream, b"id: 7\ndata: seven\n\n"))
    assert list(bridge.ended(stream, "connection lost")) == [Later(READ, READER_RETRIES[0])]
    again = only(bridge.fire(READ), Request)
    assert again.url == f"{BASE}/sse?after=7"


def test_the_gateways_closed_event_is_the_close_code_and_reason() -> None:
    bridge, stream = streaming()
    actions = list(bridge.received(stream, b'event: close\ndata: {"code":4001,"reason":"kicked"}\n\n'))
    assert actions[-1] == Lost(4001, "kicked", True, None)
    assert list(bridge.close(1000, "")) == []  # the gateway ended it: no farewell


def test_a_closed_event_that_is_not_json_still_closes() -> None:
    bridge, stream = streaming()
    assert only(bridge.received(stream, b"event: close\ndata: ?\n\n"), Lost) == Lost(
        None, "closed by the gateway", True, None)


# -- falling back to long polling ---------------------------------------------------


@pytest.mark.parametrize(("status", "kind"), [(404, "text/html"), (200, "application/json")])
def test_a_refused_stream_falls_back_to_polling_for_good(status: int, kind: str) -> None:
    bridge, stream = registered()
    poll = only(bridge.answered(stream, status, b"", kind), Request)
    assert (poll.kind, poll.url) == (POLL, f"{BASE}/poll?after=0&timeout={POLL_TIMEOUT}")
    assert poll.timeout == POLL_TIMEOUT + 10.0 and not bridge.streaming
    assert bridge.log.lines == [  # type: ignore[attr-defined]
        f"bridge reachable at {URL}", f"no event stream from {URL} (HTTP {status}): falling back to long polling"]


def test_an_unanswered_stream_request_falls_back_to_polling() -> None:
    bridge, stream = registered()
    assert only(bridge.failed(stream, "timed out", timed_out=True), Request).kind == POLL


def test_a_held_back_stream_is_stopped_and_polling_takes_over() -> None:
    bridge, stream = streaming()
    actions = list(bridge.fire(SILENT))
    assert actions[0] == Stop(stream) and isinstance(actions[1], Request) and actions[1].kind == POLL
    assert list(bridge.ended(stream, "stopped")) == []  # the stopped stream no longer counts


def test_a_flowing_stream_is_not_held_back() -> None:
    bridge, stream = streaming()
    list(bridge.received(stream, b": hello\n\n"))
    assert list(bridge.fire(SILENT)) == [] and bridge.streaming


def test_a_401_on_the_stream_ends_the_session() -> None:
    bridge, stream = registered()
    assert list(bridge.answered(stream, 401, b"", "application/json")) == [
        Lost(None, "the bridge session ended (HTTP 401)", True, None)]


# -- long polling ---------------------------------------------------------------


def test_polls_deliver_new_messages_and_ask_again_after_the_last() -> None:
    bridge, poll = registered(stream=False)
    assert poll.kind == POLL
    body = {"messages": [{"seq": 1, "envelope": {"n": 1}}, {"seq": 2, "envelope": {"n": 2}},
                         {"seq": 1, "envelope": {"n": 1}}]}
    actions = list(bridge.answered(poll, 200, json.dumps(body).encode()))
    assert actions[:2] == [Deliver('{"n": 1}'), Deliver('{"n": 2}')]
    assert isinstance(actions[2], Request) and actions[2].url == f"{BASE}/poll?after=2&timeout={POLL_TIMEOUT}"
    assert len(actions) == 3 and bridge.cursor.confirmed == 2


def test_a_poll_with_closed_delivers_then_closes() -> None:
    bridge, poll = registered(stream=False)
    body = {"messages": [{"seq": 1, "envelope": {"n": 1}}], "closed": {"code": 4000, "reason": "bye"}}
    assert list(bridge.answered(poll, 200, json.dumps(body).encode())) == [
        Deliver('{"n": 1}'), Lost(4000, "bye", True, None)]


def test_bad_polls_are_retried_a_few_times_then_the_connection_is_lost() -> None:
    bridge, poll = registered(stream=False)
    for delay in READER_RETRIES:
        assert list(bridge.answered(poll, 503, b"busy")) == [Later(READ, delay)]
        poll = only(bridge.fire(READ), Request)
    assert list(bridge.failed(poll, "refused")) == [Lost(None, f"reading from {URL} failed: refused", True, None)]


def test_a_good_poll_resets_the_retries() -> None:
    bridge, poll = registered(stream=False)
    assert list(bridge.answered(poll, 503, b"")) == [Later(READ, READER_RETRIES[0])]
    poll = only(bridge.fire(READ), Request)
    poll = only(bridge.answered(poll, 200, b'{"messages":[]}'), Request)
    assert list(bridge.answered(poll, 503, b"")) == [Later(READ, READER_RETRIES[0])]


def test_a_node_that_closes_while_a_text_is_delivered_stops_the_rest() -> None:
    bridge, poll = registered(stream=False)
    body = {"messages": [{"seq": n, "envelope": {"n": n}} for n in (1, 2, 3)]}
    taken: list[Action] = []
    for action in bridge.answered(poll, 200, json.dumps(body).encode()):
        taken.append(action)
        if isinstance(action, Deliver):
            closing = list(bridge.close(1000, "done"))
            assert closing[0].farewell is not None  # type: ignore[union-attr]
    assert taken == [Deliver('{"n": 1}')]


# -- closing ---------------------------------------------------------------------


def test_closing_a_live_session_says_farewell() -> None:
    bridge, _ = registered()
    lost = only(bridge.close(1000, ""), Lost)
    assert (lost.code, lost.reason, lost.notify) == (1000, "closed", True)
    farewell = lost.farewell
    assert (farewell.kind, farewell.url, farewell.body) == (FAREWELL, f"{BASE}/send", UNREGISTER)
    assert farewell.headers["x-wingman-session"] == SECRET
    assert list(bridge.close(1000, "")) == []


def test_no_farewell_once_the_unregister_was_acked() -> None:
    bridge, _ = registered()
    post = only(bridge.send('{"type":"unregister"}'), Request)
    acked = {"type": "ack", "payload": {"action": "unregister"}}
    list(bridge.answered(post, 200, json.dumps(acked).encode()))
    assert list(bridge.close(1000, "client closed")) == [Lost(1000, "client closed", True, None)]


def test_reports_after_the_end_are_ignored() -> None:
    bridge, stream = streaming()
    post = only(bridge.send("one"), Request)
    list(bridge.close(1000, ""))
    assert list(bridge.received(stream, b"id: 1\ndata: x\n\n")) == []
    assert list(bridge.answered(post, 204, b"")) == []
    assert list(bridge.fire(READ)) == [] and list(bridge.fire(CONFIRMING)) == []
