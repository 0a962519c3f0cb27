"""A worker in another language, as in the seeds: it watches a session's
variables over herald's gRPC API with stubs generated from the shipped
proto, and resumes by cursor after a reconnection.

Usage: watch_worker.py STUBS_DIR ADDRESS SESSION
Prints one JSON line per step to stdout; reads "go" from stdin before it
reconnects. Exits 0 once it has seen the value "after-2" after the resume.
"""
import json
import sys

stubs, address, session = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
import herald_pb2  # noqa: E402
import herald_pb2_grpc  # noqa: E402


def say(**line):
    print(json.dumps(line), flush=True)


def change_of(event):
    change = event.change
    return {
        "cursor": event.cursor,
        "name": change.name,
        "value": json.loads(change.new_value_json) if change.HasField("new_value_json") else None,
        "version": change.version,
        "current": json.loads(change.meta_json).get("current", False),
    }


with grpc.insecure_channel(address) as channel:
    herald = herald_pb2_grpc.HeraldStub(channel)
    # Live once the initial metadata has come: nothing committed after it is missed.
    stream = herald.Watch(herald_pb2.WatchRequest(session_id=session, variable_names=["mode"], include_current=True), timeout=60)
    stream.initial_metadata()
    say(step="live")
    cursor = None
    for event in stream:
        if event.WhichOneof("event") != "change":
            say(step="unexpected", event=event.WhichOneof("event"))
            sys.exit(1)
        seen = change_of(event)
        say(step="change", **seen)
        cursor = seen["cursor"]
        if seen["value"] == "from-http":
            stream.cancel()
            break
    say(step="disconnected", cursor=cursor)

    if sys.stdin.readline().strip() != "go":
        sys.exit(2)
    resumed = herald.Watch(herald_pb2.WatchRequest(session_id=session, variable_names=["mode"], cursor=cursor), timeout=60)
    for event in resumed:
        kind = event.WhichOneof("event")
        if kind != "change":
            say(step="unexpected", event=kind)
            sys.exit(1)
        seen = change_of(event)
        say(step="replayed", **seen)
        if seen["value"] == "after-2":
            resumed.cancel()
            break

    # A unary call, and its error as a status with the herald-code trailer.
    try:
        herald.Get(herald_pb2.VariableRef(session_id=session, name="nothing"))
    except grpc.RpcError as error:
        codes = [value for key, value in error.trailing_metadata() if key == "herald-code"]
        say(step="error", code=error.code().name, herald_code=codes[0] if codes else None)
say(step="done")
