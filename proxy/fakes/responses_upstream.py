"""ScriptedResponsesUpstream: a scripted upstream that serves `/v1/responses` natively.

Like vLLM or OpenAI: it keeps its own responses for `previous_response_id`, answers function
calls and JSON text as scripted (`Behaviour.tool_call`, `.content`), emits a reasoning item
(with opaque `encrypted_content`) when asked for `reasoning`, and streams the typed event
sequence. Chat, completions and embeddings are `ScriptedUpstream`'s.
"""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from starlette.types import Receive, Scope, Send

from proxy.fakes.upstream import (
    Behaviour,
    ScriptedUpstream,
    _body,
    _error,
    _json,
    _prompt_tokens,
    _sleep_unless_gone,
)


class ScriptedResponsesUpstream(ScriptedUpstream):
    """The ASGI app; `responses` holds what it answered (its own store)."""

    def __init__(self, models: tuple[str, ...] = ("fake-model",), name: str = "fake-native"):
        super().__init__(models, name)
        self.responses: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """`/v1/responses` here, everything else as the chat fake does."""
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/responses"):
            return await super().__call__(scope, receive, send)
        if scope["method"] == "GET":
            found = self.responses.get(path.rsplit("/", 1)[-1])
            if found is None:
                return await _json(send, 404, _error("not found", "invalid_request_error"))
            return await _json(send, 200, found)
        request = json.loads(await _body(receive))
        self.stats.bodies.append(request)
        self.stats.requests += 1
        behaviour = self.queue.popleft() if self.queue else self.default
        previous = request.get("previous_response_id")
        if previous is not None and previous not in self.responses:
            error = _error(f"Previous response with id '{previous}' not found.",
                           "invalid_request_error")
            error["error"] |= {"param": "previous_response_id",
                               "code": "previous_response_not_found"}
            return await _json(send, 400, error)
        if behaviour.status != 200:
            kind = "server_error" if behaviour.status >= 500 else "invalid_request_error"
            return await _json(send, behaviour.status, _error(behaviour.error_message, kind))
        response = self._response(request, behaviour)
        if request.get("store", True):
            self.responses[response["id"]] = response
            if len(self.responses) > 10_000:  # a long benchmark run: forget the oldest
                del self.responses[next(iter(self.responses))]
        if request.get("stream"):
            return await self._stream_events(response, behaviour, receive, send)
        self.stats.completed += 1
        await _json(send, 200, response)

    def _response(self, request: dict[str, Any], behaviour: Behaviour) -> dict[str, Any]:
        number = next(self._ids)
        output: list[dict[str, Any]] = []
        if request.get("reasoning"):
            output.append({"id": f"rs_fake{number}", "type": "reasoning", "status": "completed",
                           "summary": [{"type": "summary_text", "text": "thought about it"}],
                           "encrypted_content": f"opaque-{number}"})
        if behaviour.tool_call is not None:
            output.append({"id": f"fc_fake{number}", "type": "function_call",
                           "status": "completed", "call_id": f"call_fake{number}",
                           "name": behaviour.tool_call["name"],
                           "arguments": behaviour.tool_call.get("arguments", "{}")})
            words: list[str] = []
        else:
            words = (behaviour.content.split(" ") if behaviour.content is not None
                     else [f"tok{i}" for i in range(behaviour.tokens)])
            output.append({"id": f"msg_fake{number}", "type": "message", "status": "completed",
                           "role": "assistant", "content": [{
                               "type": "output_text", "text": " ".join(words),
                               "annotations": [], "logprobs": []}]})
        incomplete = behaviour.finish_reason == "length" and behaviour.tool_call is None
        input_tokens = _prompt_tokens(request)
        output_tokens = max(len(words), 1)
        return {
            "id": f"resp_fake{number}", "object": "response", "created_at": int(time.time()),
            "status": "incomplete" if incomplete else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
            "error": None, "model": request.get("model"), "output": output,
            "instructions": request.get("instructions"), "parallel_tool_calls": True,
            "previous_response_id": request.get("previous_response_id"),
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools", []), "text": request.get("text", {
                "format": {"type": "text"}}),
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                      "total_tokens": input_tokens + output_tokens,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}},
        }

    async def _stream_events(self, response: dict[str, Any], behaviour: Behaviour,
                             receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")]})
        sequence = itertools.count()

        def event(kind: str, **fields: Any) -> bytes:
            data = json.dumps({"type": kind, "sequence_number": next(sequence), **fields})
            return f"event: {kind}\ndata: {data}\n\n".encode()

        shell = response | {"status": "in_progress", "output": [], "usage": None}
        events = [event("response.created", response=shell),
                  event("response.in_progress", response=shell)]
        for index, item in enumerate(response["output"]):
            ids = {"output_index": index, "item_id": item["id"]}
            if item["type"] == "message":
                text = item["content"][0]["text"]
                part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
                events += [event("response.output_item.added", output_index=index,
                                 item=item | {"status": "in_progress", "content": []}),
                           event("response.content_part.added", **ids, content_index=0,
                                 part=part)]
                pieces = text.split(" ")
                for number, piece in enumerate(pieces):
                    delta = piece if number == 0 else " " + piece
                    events.append(event("response.output_text.delta", **ids, content_index=0,
                                        delta=delta, logprobs=[]))
                events += [event("response.output_text.done", **ids, content_index=0,
                                 text=text, logprobs=[]),
                           event("response.content_part.done", **ids, content_index=0,
                                 part=part | {"text": text})]
            elif item["type"] == "function_call":
                events += [event("response.output_item.added", output_index=index,
                                 item=item | {"status": "in_progress", "arguments": ""}),
                           event("response.function_call_arguments.delta", **ids,
                                 delta=item["arguments"]),
                           event("response.function_call_arguments.done", **ids,
                                 arguments=item["arguments"], name=item["name"])]
            else:
                events.append(event("response.output_item.added", output_index=index,
                                    item=item))
            events.append(event("response.output_item.done", output_index=index, item=item))
        ending = ("response.incomplete" if response["status"] == "incomplete"
                  else "response.completed")
        events.append(event(ending, response=response))
        for number, payload in enumerate(events):
            if number and behaviour.chunk_delay_s and not await _sleep_unless_gone(
                    behaviour.chunk_delay_s, receive):
                self._cancelled()
                return
            await send({"type": "http.response.body", "body": payload, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        self.stats.completed += 1


def main() -> None:
    """Serve the fake on a port (`python -m proxy.fakes.responses_upstream --port 8000`)."""
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description="Scripted upstream with a native Responses "
                                                 "API (a fake).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", action="append", help="model names to list")
    args = parser.parse_args()
    app = ScriptedResponsesUpstream(tuple(args.model or ["fake-model"]))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
