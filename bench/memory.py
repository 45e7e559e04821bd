"""Bench scenario ``memory``: does the default model remember what the user said?

Ten conversations, each in a fresh session straight against the llm gRPC service (the llm
holds the history): the user states a fact, asks two unrelated questions, then asks for the
fact back. A conversation passes when the last answer contains the fact's keyword. Issue 11's
target for the default model is at least 9/10. The answers are kept in the report, so a
"pass" that is nonsense can be seen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import grpc

from avatarchat.v1 import llm_pb2, llm_pb2_grpc


@dataclass(frozen=True)
class Conversation:
    fact: str
    unrelated: tuple[str, str]
    question: str
    keywords: tuple[str, ...]  # any of them, case-insensitive, counts as recalled


CONVERSATIONS = [
    Conversation(
        "Hi! My name is Alice.",
        ("How does a rainbow form?", "Can you recommend a good book?"),
        "What is my name?",
        ("alice",),
    ),
    Conversation(
        "I live in Lisbon, by the river.",
        ("What is the capital of Japan?", "Say something cheerful."),
        "Which city do I live in?",
        ("lisbon",),
    ),
    Conversation(
        "My dog is called Biscuit.",
        ("Why is the sky blue?", "What should I cook tonight?"),
        "What is my dog called?",
        ("biscuit",),
    ),
    Conversation(
        "My favourite colour is green.",
        ("Tell me something nice about the sea.", "How many legs does a spider have?"),
        "What is my favourite colour?",
        ("green",),
    ),
    Conversation(
        "I work as a nurse at the hospital.",
        ("What do you like to do on weekends?", "Do you like music?"),
        "What do I do for a living?",
        ("nurse",),
    ),
    Conversation(
        "My sister's name is Priya.",
        ("What is the tallest mountain?", "Give me a tip for sleeping well."),
        "What is my sister's name?",
        ("priya",),
    ),
    Conversation(
        "I was born in March.",
        ("How do bees make honey?", "What is a good name for a cat?"),
        "In which month was I born?",
        ("march",),
    ),
    Conversation(
        "I play the cello in an orchestra.",
        ("What is two plus two?", "Tell me a fun fact about space."),
        "Which instrument do I play?",
        ("cello",),
    ),
    Conversation(
        "My favourite food is lasagna.",
        ("Why do leaves change colour?", "What is your favourite season?"),
        "What is my favourite food?",
        ("lasagna", "lasagne"),
    ),
    Conversation(
        "I drive an old red Volvo.",
        ("How far away is the moon?", "What is a healthy breakfast?"),
        "What car do I drive?",
        ("volvo",),
    ),
]


def recalled(answer: str, keywords: tuple[str, ...]) -> bool:
    lowered = answer.lower()
    return any(keyword in lowered for keyword in keywords)


async def _turn(
    stub: llm_pb2_grpc.LlmServiceStub, session: str, n: int, text: str
) -> tuple[str, float, str]:
    request = llm_pb2.ReplyRequest(session_id=session, turn_id=f"t{n}", text=text)
    started = time.perf_counter()
    first: float | None = None
    done: llm_pb2.ReplyDone | None = None
    async for event in stub.Reply(request, timeout=120):
        if event.WhichOneof("event") == "delta" and first is None:
            first = time.perf_counter()
        elif event.WhichOneof("event") == "done":
            done = event.done
    if done is None:
        raise RuntimeError(f"{session}: the reply to {text!r} ended without done")
    return done.text, ((first or time.perf_counter()) - started) * 1000, done.model


async def run(addr: str, conversations: list[Conversation] = CONVERSATIONS) -> dict[str, Any]:
    """Runs the conversations; returns the recall count, the answers and first-delta times."""
    results: list[dict[str, Any]] = []
    first_delta_ms: list[float] = []
    model = ""
    async with grpc.aio.insecure_channel(addr) as channel:
        stub = llm_pb2_grpc.LlmServiceStub(channel)
        for index, conversation in enumerate(conversations):
            session = f"bench-memory-{index}-{int(time.time())}"
            texts = [conversation.fact, *conversation.unrelated, conversation.question]
            answer = ""
            for n, text in enumerate(texts, start=1):
                answer, ttfd_ms, model = await _turn(stub, session, n, text)
                first_delta_ms.append(ttfd_ms)
            await stub.ResetHistory(llm_pb2.ResetHistoryRequest(session_id=session), timeout=10)
            results.append(
                {
                    "question": conversation.question,
                    "answer": answer,
                    "recalled": recalled(answer, conversation.keywords),
                }
            )
    return {
        "model": model,
        "recalled": sum(r["recalled"] for r in results),
        "conversations": len(results),
        "first_delta_ms": first_delta_ms,
        "answers": results,
    }
